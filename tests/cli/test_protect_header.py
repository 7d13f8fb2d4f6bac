"""The protect run header: what a user reads first about the run it starts."""

from seamharden.cli.protect_cmd import run_header
from seamharden.recipe.loading import load_recipe


def test_header_names_the_beta_delay_only_when_l_sd_is_on():
    delayed = load_recipe("smollm2-135m-cpu", ["train.steps=130", "seam.delay_restart=false"])
    line = run_header("smollm2-135m", "out", delayed)
    assert "(130 steps, beta 8 after 80 steps at 0, adamw, L_sd estimator forward differences" in line
    assert line.endswith("utility controller every 5 steps)")
    ablation = load_recipe("smollm2-135m-cpu", ["seam.beta=0", "seam.delay_restart=false"])
    assert "beta 0, adamw" in run_header("smollm2-135m", "out", ablation)  # no delay of a beta that is 0
    plain = load_recipe("smollm2-135m-cpu", ["seam.beta_delay=0", "seam.delay_restart=false", "seam.beta=0.5"])
    assert "beta 0.5, adamw" in run_header("m", "o", plain, ", 2 processes, FSDP2 sharding x")
    assert run_header("m", "o", plain, ", 2 processes, FSDP2 sharding x").endswith("FSDP2 sharding x)")


def test_header_names_the_restart():
    line = run_header("smollm2-135m", "out", load_recipe("smollm2-135m-cpu", ["seam.delay_restart=true"]))
    assert "(130 steps, beta 8 after 80 steps at 0, fresh optimizer and anchor at step 80, adamw" in line
    ablation = run_header("smollm2-135m", "out", load_recipe("smollm2-135m-cpu", ["seam.beta=0",
                                                                                 "seam.delay_restart=true"]))
    assert "beta 0, fresh optimizer and anchor at step 80, adamw" in ablation  # the ablation restarts the same way


def test_header_names_the_anchors_extra_data_but_no_local_path(tmp_path):
    line = run_header("smollm2-135m", "out", load_recipe("smollm2-135m-cpu"))
    assert "anchor 1 on D_bgn + chat_facts, utility controller every 5 steps" in line
    local = load_recipe("smollm2-135m-cpu", [f"utility.anchor_data={{kind: local, path: {tmp_path}/facts.jsonl}}"])
    line = run_header("smollm2-135m", "out", local)
    assert "anchor 1 on D_bgn + utility.anchor_data," in line and str(tmp_path) not in line
    assert "anchor 1, utility" in run_header("m", "o", load_recipe("smollm2-135m-cpu", ["utility.anchor_data=null"]))


def test_header_names_where_grad_l_ul_is_taken():
    line = run_header("smollm2-135m", "out", load_recipe("smollm2-135m-cpu"))
    assert "forward differences, relative step, self-check off, grad L_ul in the perturbed pass, anchor" in line
    own = run_header("smollm2-135m", "out", load_recipe("smollm2-135m-cpu", ["seam.unlearn_pass=own"]))
    assert "self-check off, anchor" in own and "perturbed" not in own
