"""`aurax estimate`: projected time and cost from the config and the figures (no AWS involved)."""

from __future__ import annotations

import pytest

from aurax.ops.estimate import estimate, train_flops_per_sample
from aurax_contracts import JobExit, RunConfig


def config(**training: object) -> RunConfig:
    return RunConfig.model_validate({"run_id": "est-1", "training": training} if training else {"run_id": "est-1"})


def test_phases_add_up_and_a_no_go_costs_less_than_the_whole_run():
    e = estimate(config())
    assert e.total_usd == pytest.approx(sum(p.usd for p in e.phases) + e.storage_usd)
    assert 0 < e.decision_usd < e.total_usd
    assert [p.name for p in e.phases][:3] == ["prepare dataset", "preflight", "train to epoch 5"]
    # "all eligible": the default rules' figure extrapolated from real labels (tests/dataset/test_dataset_real_labels)
    assert e.train_clips == 2226 and e.steps_per_epoch == -(-e.train_clips // 32)
    assert any(a.startswith("clips: all eligible: about 2,470 clips, extrapolated") for a in e.assumptions)
    fixed = estimate(RunConfig.model_validate({"run_id": "est-1", "dataset": {"target_clips": 8000}}))
    assert fixed.train_clips == round(8000 * 12 / 13)


def test_training_time_follows_epochs_and_measured_throughput():
    base = estimate(config())
    longer = estimate(config(total_epochs=40, decision_epoch=5))
    assert longer.total_hours > base.total_hours and longer.decision_usd == pytest.approx(base.decision_usd, rel=0.05)
    slow = estimate(config(), samples_per_second=base.samples_per_second / 2)
    train = next(p for p in base.phases if p.name.startswith("train"))
    slow_train = next(p for p in slow.phases if p.name.startswith("train"))
    start_hours = 420 / 3600
    assert slow_train.hours - start_hours == pytest.approx(2 * (train.hours - start_hours))
    assert slow.assumptions[0].startswith("training throughput")


def test_lora_needs_fewer_flops_and_the_measured_plan_sets_the_throughput():
    from aurax.ops import figures
    from aurax.ops.estimate import train_samples_per_second, train_utilisation

    full = train_flops_per_sample(config())
    lora = train_flops_per_sample(RunConfig.model_validate({"run_id": "est-1", "model": {"finetune": "lora"}}))
    assert lora < full
    assert train_utilisation(config()).value == figures.JOB_MFU_WITHIN_15_GIB.value
    before = RunConfig.model_validate({"run_id": "est-1", "model": {"attention": "eager"}})
    assert train_utilisation(before).value == figures.H200_MFU_BEFORE_ISSUE_11.value
    # the plan within a T4's memory is over 4x the pre-issue-11 default, as measured on the H200
    assert train_samples_per_second(config()) > 4 * train_samples_per_second(before)
    assert train_samples_per_second(config(activation_checkpointing="off")) < train_samples_per_second(config())


def test_the_model_flops_are_what_torch_counts_for_a_musicgen_training_pass():
    """The MFU numerator (`aurax.ops.flops`, shared with bench/gpu_train_benchmark.py) against torch's own FLOP
    counter: one forward and backward of a small MusicGen whose decoder trains, with eager attention (whose
    matmuls the counter sees), over 303 decoder positions and 6 prompt tokens."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from aurax.model import load_musicgen
    from aurax.ops.flops import decoder_train_flops_per_sample
    from aurax.train.data import delay_pattern_labels
    from aurax_contracts import TINY_MODEL_ID

    model = load_musicgen(TINY_MODEL_ID, attention="eager").train()
    model.requires_grad_(False)
    model.decoder.requires_grad_(True)
    d = model.config.decoder
    labels = delay_pattern_labels(torch.randint(0, d.vocab_size, (1, d.num_codebooks, 300)))
    hidden = torch.randn(1, 6, model.config.text_encoder.d_model)
    mask = torch.ones(1, 6, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        model(attention_mask=mask, encoder_outputs=(hidden,), labels=labels).loss.backward()
    formula = decoder_train_flops_per_sample(layers=d.num_hidden_layers, width=d.hidden_size, ffn_dim=d.ffn_dim,
                                             codebooks=d.num_codebooks, codebook_size=d.vocab_size,
                                             audio_tokens=labels.shape[1], text_tokens=6)
    assert formula == pytest.approx(counter.get_total_flops(), rel=0.002)
    # musicgen-small, 30 s: 3.93 TFLOP per example (the keys and values of the cross-attention are the prompt's)
    assert train_flops_per_sample(config()) == pytest.approx(3.934e12, rel=1e-3)


def test_the_default_loss_watch_fits_the_default_runs_length_in_records():
    """The monitor counts training records (one per `log_every_steps` steps). With the default selection (~2,200
    training clips) and batch, a run has ~140 of them: a plateau must be able to alert after the moving level's
    warm-up, within the epochs a GO trains on, and not before a couple of epochs of no improvement."""
    run = config()
    t, m = run.training, run.monitoring
    records_per_epoch = estimate(run).steps_per_epoch / t.log_every_steps
    assert m.spike_window_records + m.plateau_records <= t.total_epochs * records_per_epoch
    assert m.plateau_records <= (t.total_epochs - t.decision_epoch) * records_per_epoch / 2
    assert m.plateau_records >= 2 * records_per_epoch


def test_a_run_without_epochs_after_the_decision_has_no_go_phases():
    e = estimate(config(total_epochs=5, decision_epoch=5))
    assert not any("GO only" in p.name for p in e.phases)


def test_cli_prints_phases_budget_and_assumptions(aurax, run_yaml):
    result = aurax("estimate", "--config", run_yaml("run_id: est-cli\nbudget: {budget_usd: 1}\n"))
    assert result.code == 0, result.err
    assert "train to epoch 5" in result.out and "OVER budget" in result.out
    assert "assumed figures" in result.out and "T4_MFU_TRANSFER" in result.out
    assert "training MFU on a T4: 26.8%" in result.out
    data = aurax("estimate", "--config", run_yaml("run_id: est-cli\n"), "--json").json()
    assert data["within_budget"] is True and data["total_usd"] > data["decision_usd"] > 0


def test_cli_rejects_a_bad_config_and_bad_overrides(aurax, run_yaml):
    bad = aurax("estimate", "--config", run_yaml("run_id: est-cli\ntraining: {epochs: 3}\n"))
    assert bad.code == JobExit.BAD_CONFIG and "training.epochs" in bad.err
    negative = aurax("estimate", "--config", run_yaml("run_id: est-cli\n"), "--samples-per-second", "0")
    assert negative.code == JobExit.BAD_CONFIG and "--samples-per-second must be above 0" in negative.err
    for flag, value in (("--samples-per-second", "nan"), ("--spot-usd-per-hour", "inf"), ("--power", "1"),
                        ("--true-rate", "nan"), ("--control-rate", "0")):
        refused = aurax("estimate", "--config", run_yaml("run_id: est-cli\n"), flag, value)
        assert refused.code == JobExit.BAD_CONFIG and f"{flag} must be" in refused.err, (flag, refused.err)
        assert "nan" not in refused.out
