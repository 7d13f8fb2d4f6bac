"""Everything SEAM trains and evaluates on, built from the recipe's ``data`` section."""

from __future__ import annotations

from dataclasses import dataclass, field

from seamharden.data.alignment import Generate, alignment_records
from seamharden.data.builtin_sets import builtin_refusals
from seamharden.data.formatting import encode_example, pad_id, resolve_template
from seamharden.data.sources import fingerprint, load_records
from seamharden.data.streams import Stream, reserve_prompts, split_heldout
from seamharden.errors import UserError
from seamharden.recipe.schema import DataSection, DataSource

STREAMS = ("adv", "aln", "bgn")


@dataclass
class SeamData:
    """Training streams D_adv, D_aln, D_bgn, the held-out records, and their fingerprints.

    ``records`` holds the training records behind each stream; ``fingerprints`` has a
    sha256 for each of ``adv, aln, bgn, heldout_adv, heldout_bgn`` (and ``val_bgn`` when a
    validation set is used) so that a report can prove which data a model was hardened and
    evaluated on. ``val_bgn``: the defender's benign validation records for the utility
    controller, never trained on and never in the attack suite's held-out data. ``anchor``: the
    KL anchor's own stream (D_bgn's training records plus ``utility.anchor_data``) when the recipe
    gives extra anchor records; None: the anchor draws from ``bgn``.
    """

    adv: Stream
    aln: Stream
    bgn: Stream
    heldout_adv: list[dict]
    heldout_bgn: list[dict]
    records: dict[str, list[dict]]
    fingerprints: dict[str, str]
    template: str
    pad_token_id: int
    val_bgn: list[dict] = field(default_factory=list)
    anchor: Stream | None = None

    @property
    def anchor_stream(self) -> Stream:
        """Where the KL anchor takes its batches: its own stream, else D_bgn's."""
        return self.anchor if self.anchor is not None else self.bgn

    def state_dict(self) -> dict[str, dict]:
        """Positions of the streams (the three, and the anchor's own), for checkpoints."""
        state = {name: getattr(self, name).state_dict() for name in STREAMS}
        if self.anchor is not None:
            state["anchor"] = self.anchor.state_dict()
        return state

    def load_state_dict(self, state: dict[str, dict]) -> None:
        for name in STREAMS:
            getattr(self, name).load_state_dict(state[name])
        if self.anchor is not None:
            self.anchor.load_state_dict(state["anchor"])


def _load(name: str, source: DataSource, need_response: bool) -> list[dict]:
    records = load_records(source)
    if not records:
        raise UserError(f"data.{name} ({source.kind} {source.path!r}) has no rows after filtering")
    if need_response and any(r["response"] is None for r in records):
        raise UserError(f"data.{name} needs responses; set data.{name}.columns.response")
    return records


def _anchor_extra(extra: list[dict], train: list[dict], kept_out: list[dict]) -> list[dict]:
    """``utility.anchor_data``'s records less any whose prompt is held out (the suite's and the controller's
    records: never trained on, the anchor included) or already in D_bgn's training split."""
    drop = {r["prompt"] for r in train + kept_out}
    kept = [r for r in extra if r["prompt"] not in drop]
    if not kept:
        raise UserError("utility.anchor_data has no rows left after removing D_bgn's training, held-out and "
                        "validation prompts")
    return kept


def build_seam_data(data_cfg: DataSection, tokenizer, batch_size: int, seed: int,
                    generate: Generate | None = None, val: DataSource | None = None,
                    val_samples: int = 0, anchor_data: DataSource | None = None) -> SeamData:
    """Load, split, pair with refusals, tokenise and stream the three SEAM data sets.

    The held-out split of D_adv is removed from both the D_adv and the D_aln training
    streams (by prompt), so held-out harmfulness is measured on prompts never trained on.
    ``generate(prompts) -> answers`` is required only for ``aln_refusals=generate``.
    ``val_samples > 0`` makes a benign validation set of that many records: the first rows of
    ``val`` when given, else ``val_samples`` prompts carved out of D_bgn's training split.
    ``anchor_data``: extra benign records mixed with D_bgn's training records into the anchor's own
    stream (seed + 3; its fingerprint ``anchor_data``), less any whose prompt is held out, a validation
    record or already in D_bgn's training split.
    """
    template = resolve_template(tokenizer, data_cfg.template)
    adv_all = _load("adv", data_cfg.adv, need_response=True)
    adv_train, heldout_adv = split_heldout(adv_all, data_cfg.heldout_fraction, seed)
    bgn_train, heldout_bgn = split_heldout(_load("bgn", data_cfg.bgn, need_response=True),
                                           data_cfg.heldout_fraction, seed)

    val_bgn: list[dict] = []
    if val_samples > 0:
        if val is not None:
            val_bgn = _load("utility.val", val, need_response=True)[:val_samples]
        else:
            bgn_train, val_bgn = reserve_prompts(bgn_train, val_samples, seed)
            if not val_bgn:
                raise UserError("data.bgn has too few prompts to carve out a utility validation set; "
                                "set utility.val or add benign data")

    mode = data_cfg.aln_refusals
    if data_cfg.aln == data_cfg.adv:
        if mode == "dataset":
            raise UserError("data.aln is the same source as data.adv, so aln_refusals=dataset would train on "
                            "harmful answers; use aln_refusals=templates or point data.aln at refusal data")
        aln_source = None
    else:
        held = {r["prompt"] for r in heldout_adv}
        aln_source = [r for r in _load("aln", data_cfg.aln, need_response=mode == "dataset")
                      if r["prompt"] not in held]
        if not aln_source:
            raise UserError("data.aln has no rows left after removing the held-out adv prompts")
    if mode == "generate" and generate is None:
        raise UserError("data.aln_refusals=generate needs the model loaded to generate refusals")
    aln_train = alignment_records(adv_train, aln_source, mode, builtin_refusals(), seed, generate)

    records = {"adv": adv_train, "aln": aln_train, "bgn": bgn_train}
    pad = pad_id(tokenizer)
    streams = {}
    for offset, name in enumerate(STREAMS):
        examples = [encode_example(tokenizer, r["prompt"], r["response"], template, data_cfg.max_length)
                    for r in records[name]]
        streams[name] = Stream(examples, batch_size, seed + offset, pad)
    fingerprints = {name: fingerprint(rs) for name, rs in records.items()}
    fingerprints |= {"heldout_adv": fingerprint(heldout_adv), "heldout_bgn": fingerprint(heldout_bgn)}
    if val_bgn:
        fingerprints["val_bgn"] = fingerprint(val_bgn)
    anchor = None
    if anchor_data is not None:
        extra = _anchor_extra(_load("utility.anchor_data", anchor_data, need_response=True),
                              bgn_train, heldout_bgn + heldout_adv + val_bgn)
        fingerprints["anchor_data"] = fingerprint(extra)
        anchor = Stream([encode_example(tokenizer, r["prompt"], r["response"], template, data_cfg.max_length)
                         for r in bgn_train + extra], batch_size, seed + len(STREAMS), pad)
    return SeamData(**streams, heldout_adv=heldout_adv, heldout_bgn=heldout_bgn, records=records,
                    fingerprints=fingerprints, template=template, pad_token_id=pad, val_bgn=val_bgn,
                    anchor=anchor)
