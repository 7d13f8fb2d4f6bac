"""The protect run header: what a user reads first about the run it starts."""

from seamharden.cli.protect_cmd import run_header
from seamharden.recipe.loading import load_recipe


def test_header_names_the_beta_delay_only_when_l_sd_is_on():
    delayed = load_recipe("smollm2-135m-cpu", ["train.steps=130", "seam.delay_restart=false"])
    line = run_header("smollm2-135m", "out", delayed)
    assert "(130 steps, beta 5 after 80 steps at 0, adamw, L_sd estimator forward differences" in line
    assert line.endswith("utility controller every 5 steps)")
    ablation = load_recipe("smollm2-135m-cpu", ["seam.beta=0", "seam.delay_restart=false"])
    assert "beta 0, adamw" in run_header("smollm2-135m", "out", ablation)  # no delay of a beta that is 0
    plain = load_recipe("smollm2-135m-cpu", ["seam.beta_delay=0", "seam.delay_restart=false", "seam.beta=0.5"])
    assert "beta 0.5, adamw" in run_header("m", "o", plain, ", 2 processes, FSDP2 sharding x")
    assert run_header("m", "o", plain, ", 2 processes, FSDP2 sharding x").endswith("FSDP2 sharding x)")


def test_header_names_the_restart():
    line = run_header("smollm2-135m", "out", load_recipe("smollm2-135m-cpu", ["seam.delay_restart=true"]))
    assert "(130 steps, beta 5 after 80 steps at 0, fresh optimizer and anchor at step 80, adamw" in line
    ablation = run_header("smollm2-135m", "out", load_recipe("smollm2-135m-cpu", ["seam.beta=0",
                                                                                 "seam.delay_restart=true"]))
    assert "beta 0, fresh optimizer and anchor at step 80, adamw" in ablation  # the ablation restarts the same way
