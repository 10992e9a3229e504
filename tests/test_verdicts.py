"""Verdicts: crystal-system sums, the out-of-distribution score, threshold choice for a stated
accuracy, verdict boundaries, and the verdict in predict-xrd, predict-pdf and validate (with and
without calibration in the checkpoint)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from xtalspec.cli import main
from xtalspec.evaluation.calibration import ensemble_probabilities
from xtalspec.evaluation.validation import markdown, summarise
from xtalspec.evaluation.verdicts import (VERDICTS, assess, calibrate_members, choose_thresholds,
                                          crystal_system_ranking, feature_extractor, forward_with_features,
                                          member_meta, ood_reference, ood_score, verdict, verdict_reason,
                                          write_calibration_report)
from xtalspec.utils.torch_io import load_torch, save_torch

# --------------------------------------------------------------------------- crystal systems


def test_crystal_system_probabilities_are_sums_over_space_groups():
    groups = [1, 2, 14, 136, 221, 225]
    probs = np.array([0.05, 0.05, 0.1, 0.2, 0.25, 0.35])
    table = crystal_system_ranking(groups, probs)
    assert table["crystal_system"].tolist() == ["cubic", "tetragonal", "triclinic", "monoclinic"]  # tie: by system
    assert table["probability"].tolist() == pytest.approx([0.6, 0.2, 0.1, 0.1])
    assert table["probability"].sum() == pytest.approx(1.0)
    assert table.set_index("crystal_system").loc["cubic", "n_spacegroups"] == 2
    assert table.set_index("crystal_system").loc["cubic", "top_spacegroup"] == 225
    assert table["rank"].tolist() == [1, 2, 3, 4]
    # the system of the most probable space group need not be the most probable system
    split = crystal_system_ranking([136, 139, 225], np.array([0.3, 0.3, 0.4]))
    assert split["crystal_system"].iloc[0] == "tetragonal"  # 0.6 beats the single most probable group
    with pytest.raises(ValueError, match="3 space groups"):
        crystal_system_ranking([1, 2, 3], np.array([0.5, 0.5]))


# --------------------------------------------------------------------------- thresholds and verdicts


def test_confidence_threshold_is_the_largest_coverage_at_the_target_accuracy():
    conf = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    right = np.array([1, 1, 1, 0, 1, 0], bool)
    t = choose_thresholds(conf, right, target_accuracy=0.8)
    assert t["confidence_threshold"] == 0.7 and t["coverage"] == pytest.approx(5 / 6) and t["accuracy"] == 0.8
    t = choose_thresholds(conf, right, target_accuracy=0.9)
    assert t["confidence_threshold"] == 0.9 and t["coverage"] == 0.5 and t["accuracy"] == 1.0
    assert t["ood_threshold"] is None and t["accuracy_all"] == pytest.approx(4 / 6)
    # a threshold takes every tie: {0.9, 0.9} is only 50 % right, so 90 % cannot be reached
    t = choose_thresholds(np.array([0.9, 0.9, 0.5]), np.array([1, 0, 0], bool), target_accuracy=0.9)
    assert t["confidence_threshold"] == math.inf and t["coverage"] == 0 and t["accuracy"] is None


def test_thresholds_reach_the_target_on_calibration_data_with_maximal_coverage():
    rng = np.random.default_rng(4)
    conf = rng.uniform(0.2, 1.0, 3000)
    right = rng.random(3000) < conf  # calibrated
    scores = rng.gamma(4, 0.25, 3000)
    for target in (0.8, 0.9, 0.95):
        t = choose_thresholds(conf, right, scores, target_accuracy=target, ood_quantile=0.99)
        inside = scores <= t["ood_threshold"]
        chosen = inside & (conf >= t["confidence_threshold"])
        assert right[chosen].mean() >= target and t["accuracy"] == pytest.approx(right[chosen].mean())
        assert t["coverage"] == pytest.approx(chosen.mean())
        # no lower threshold reaches the target
        lower = np.sort(conf[inside & (conf < t["confidence_threshold"])])
        for c in lower[::50]:
            assert right[inside & (conf >= c)].mean() < target
        assert t["fraction_outside"] <= 0.011 and t["ood_threshold"] in scores  # an observed score


@pytest.mark.parametrize("p, score, expected", [
    (0.70, 1.50, "confident"),   # both exactly at their thresholds: confident, not outside
    (0.6999, 1.0, "uncertain"),
    (0.99, 1.5001, "outside"),   # outside wins over a high probability
    (0.10, 9.0, "outside"),
    (0.99, None, "confident"),   # no OOD score: the outside test is skipped
    (0.99, float("nan"), "confident"),
    (float("nan"), 1.0, "uncertain"),
])
def test_verdict_boundaries(p, score, expected):
    thresholds = {"confidence_threshold": 0.7, "ood_threshold": 1.5, "target_accuracy": 0.9}
    assert verdict(p, score, thresholds) == expected


def test_verdict_without_calibration_or_reachable_target():
    assert verdict(0.999, 0.1, None) == verdict(0.999, 0.1, {}) == "uncertain"
    assert verdict_reason(0.999, 0.1, None) == "model has no calibration"
    unreachable = {"confidence_threshold": math.inf, "ood_threshold": 2.0, "target_accuracy": 0.9}
    assert verdict(1.0, 0.1, unreachable) == "uncertain"
    assert "no confidence reached 90 % accuracy" in verdict_reason(1.0, 0.1, unreachable)
    thresholds = {"confidence_threshold": 0.73, "ood_threshold": 2.0}
    assert verdict_reason(0.41, 1.6, thresholds) == "top p 0.41 < 0.73; distance 0.8 of the outside threshold"
    assert verdict_reason(0.9, 5.0, thresholds).startswith("distance 2.5 × the outside threshold")


def test_assess_averages_member_scores_and_notes_what_is_missing():
    thresholds = {"confidence_threshold": 0.5, "ood_threshold": 1.0, "n_members": 2}
    metas = [{"temperature": 2.0, "verdict_thresholds": thresholds}, {"temperature": 2.0}]
    a = assess(0.6, metas, [0.4, 1.4])
    assert a.ood_score == pytest.approx(0.9) and a.verdict == "confident" and a.notes == []
    assert assess(0.6, metas, [0.4, 1.8]).verdict == "outside"
    b = assess(0.6, metas, [0.4, None])
    assert b.ood_score == 0.4 and "1 of 2 models have no out-of-distribution reference" in b.notes
    c = assess(0.99, [{}, {}], [None, None])
    assert c.verdict == "uncertain" and c.reason == "model has no calibration" and c.thresholds is None
    assert "ensemble of 2, used with 3" in " ".join(assess(0.6, metas + [metas[1]], [0.1, 0.1, 0.1]).notes)


# --------------------------------------------------------------------------- the OOD score


def clustered(n, width=40, direction=0, seed=0):
    """Non-negative features (as after a ReLU) around one of a few directions."""
    rng = np.random.default_rng(seed)
    centre = np.zeros(width)
    centre[direction * 5:(direction + 1) * 5] = 3.0
    return np.maximum(centre + rng.normal(0, 0.5, (n, width)), 0).astype(np.float32)


def test_ood_score_is_larger_far_from_the_reference_and_the_reference_is_weights_only(tmp_path):
    for normalise in ("l2", "none"):
        reference = ood_reference(clustered(400), k=5, normalise=normalise)
        near = ood_score(clustered(200, seed=1), reference)
        far = ood_score(clustered(200, direction=3, seed=2), reference)
        assert 0.7 < np.quantile(near, 0.95) < 1.4  # the scale: held-out training items' 95th percentile ≈ 1
        assert far.min() > 2 * np.quantile(near, 0.99)
    mixed = ood_score(0.5 * clustered(50, seed=3) + 0.5 * clustered(50, direction=3, seed=4), reference)
    assert np.median(near) < np.median(mixed) < np.median(far)
    save_torch({"meta": {"ood_reference": reference}}, tmp_path / "ref.pt")
    loaded = load_torch(tmp_path / "ref.pt")["meta"]["ood_reference"]  # weights_only=True
    assert np.array_equal(ood_score(clustered(20, seed=1), loaded), ood_score(clustered(20, seed=1), reference))
    assert reference["reference"].shape == (400 - 80, 41) and reference["n_held_out"] == 80
    assert np.array_equal(ood_reference(clustered(400), k=5)["reference"], reference["reference"])  # deterministic
    with pytest.raises(ValueError, match="width"):
        ood_score(np.zeros((1, 7)), reference)


def test_ood_score_sees_directions_off_the_principal_components():
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.normal(size=(30, 30)))[0]
    train = rng.normal(size=(300, 3)) @ basis[:3] + 5 * basis[3]  # a 3-dimensional cloud (plus an offset)
    reference = ood_reference(train, n_components=3)
    inside = ood_score(rng.normal(size=(50, 3)) @ basis[:3] + 5 * basis[3], reference)
    off = ood_score(rng.normal(size=(50, 3)) @ basis[:3] + 5 * basis[3] + 4 * basis[10], reference)
    assert np.median(off) > 2 * np.median(inside)


def test_small_reference_uses_leave_one_out_and_too_small_is_refused():
    reference = ood_reference(clustered(12), k=3)
    assert reference["n_held_out"] == 0 and reference["scale"] > 0
    with pytest.raises(ValueError, match="too few"):
        ood_reference(clustered(4), k=5)


# --------------------------------------------------------------------------- penultimate features


@pytest.mark.parametrize("build", ["spgnet", "spgvolnet", "pdfnet"])
def test_features_come_from_the_same_pass_and_forward_is_unchanged(build):
    from xtalspec.models.pdfnet import PDFNet
    from xtalspec.models.spgnet import SpgNet, SpgVolNet

    torch.manual_seed(0)
    model, x, width = {"spgnet": lambda: (SpgNet(5, n_bins=1500), torch.rand(3, 1500), 1150),
                       "spgvolnet": lambda: (SpgVolNet(5, n_bins=1500), torch.rand(3, 1500), 1150),
                       "pdfnet": lambda: (PDFNet(5), torch.rand(3, 209), 256)}[build]()
    keys = list(model.state_dict())
    model.eval()
    with torch.no_grad():
        plain = model(x)
        out, features = forward_with_features(model, x)
    assert features.shape == (3, width) and (features >= 0).all()  # after the ReLU
    assert set(out) == set(plain) and all(torch.equal(out[k], plain[k]) for k in plain)
    last = model.classifier[-1]
    assert torch.allclose(last(features), plain["logits"])
    assert list(model.state_dict()) == keys


def test_feature_extractor_hooks_models_without_forward_features():
    class Small(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.body = torch.nn.Linear(4, 6)
            self.classifier = torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Linear(6, 3))

        def forward(self, x):
            return {"logits": self.classifier(self.body(x))}

    model, x = Small(), torch.rand(2, 4)
    assert torch.equal(feature_extractor(model)(x), torch.relu(model.body(x)))
    with pytest.raises(TypeError, match="no Linear"):
        feature_extractor(torch.nn.ReLU())(x)


# --------------------------------------------------------------------------- calibrate_members


def test_calibrate_members_in_one_call(tmp_path):
    rng = np.random.default_rng(0)
    n, n_classes = 1200, 5
    z = rng.normal(0, 2, (n, n_classes))
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.minimum((rng.random(n)[:, None] > np.cumsum(p, 1)).sum(1), n_classes - 1)
    logits = np.stack([3 * z + rng.normal(0, 0.2, z.shape) for _ in range(2)])
    val_features = [clustered(n, seed=s) for s in (1, 2)]
    train_features = [clustered(300, seed=s) for s in (3, 4)]
    cal = calibrate_members(logits, labels, val_features, train_features, target_accuracy=0.85)
    assert cal["temperature"] > 2 and cal["ece_after"] < cal["ece_before"] / 2
    assert cal["nll_after"] < cal["nll_before"] and cal["n_fit"] == cal["n_eval"] == 600
    t = cal["verdict_thresholds"]
    assert t["accuracy"] >= 0.85 and 0 < t["coverage"] < 1 and t["n_members"] == 2 and t["ood_threshold"] > 0
    assert len(cal["ood_reference"]) == 2
    # the thresholds do what they say on the evaluation half (recomputed here)
    evaluation = np.sort(np.random.default_rng(0).permutation(n)[600:])
    probs = ensemble_probabilities(logits[:, evaluation], cal["temperature"])
    scores = np.mean([ood_score(f[evaluation], r) for f, r in zip(val_features, cal["ood_reference"])], axis=0)
    confident = np.array([verdict(q, s, t) == "confident" for q, s in zip(probs.max(1), scores)])
    assert confident.mean() == pytest.approx(t["coverage"])
    assert (probs.argmax(1) == labels[evaluation])[confident].mean() >= 0.85
    # stored in a checkpoint and read back with weights_only
    save_torch({"meta": member_meta(cal, 1)}, tmp_path / "m.pt")
    meta = load_torch(tmp_path / "m.pt")["meta"]
    assert meta["temperature"] == cal["temperature"] and meta["verdict_thresholds"] == t
    assert torch.equal(meta["ood_reference"]["reference"], cal["ood_reference"][1]["reference"])
    written = write_calibration_report(cal, tmp_path / "calibration.md", tmp_path / "reliability.png",
                                       tmp_path / "reliability.csv")
    assert len(written) == 3
    text = (tmp_path / "calibration.md").read_text()
    assert "expected calibration error" in text and "![reliability diagram](reliability.png)" in text
    assert set(pd.read_csv(tmp_path / "reliability.csv")["calibration"]) == {"before", "after"}


# --------------------------------------------------------------------------- in predict-xrd, predict-pdf, validate

GROUPS = [136, 221, 225]
CU = 1.5418
NACL_PEAKS = "27.37 9\n31.70 100\n45.45 60\n53.87 2\n56.47 17\n66.23 6\n75.30 1\n"


def _cubic_peaks(a, face_centred, rng):
    import itertools

    two_theta = []
    for h, k, l in itertools.product(range(7), repeat=3):
        if not h + k + l or (face_centred and len({h % 2, k % 2, l % 2}) > 1):
            continue
        s = math.sqrt(h * h + k * k + l * l) / a * CU / 2
        if s < 1:
            two_theta.append(2 * math.degrees(math.asin(s)))
    two_theta = np.unique(np.round(two_theta, 3))
    two_theta = two_theta[(two_theta > 10) & (two_theta < 110)]
    return two_theta, rng.uniform(5, 100, len(two_theta))


@pytest.fixture(scope="module")
def xrd_models(tmp_path_factory):
    """One SpgVolNet with random weights (the plumbing is what is tested; its logits spread by the
    last bias, its stored temperature set to 2) saved as a member three times: without
    calibration, calibrated (thresholds set so that it is confident unless outside) and
    calibrated with an outside threshold that every input exceeds."""
    from xtalspec.models.spgnet import SpgVolNet
    from xtalspec.spectra.measured import profile_from_peaks

    torch.manual_seed(0)
    model = SpgVolNet(len(GROUPS)).eval()
    with torch.no_grad():  # random weights give near-equal logits: spread them so that a temperature shows
        model.classifier[-1].bias.copy_(torch.tensor([1.5, 0.0, -1.5]))
    rng = np.random.default_rng(0)
    profiles = np.array([profile_from_peaks(*_cubic_peaks(rng.uniform(3.5, 6.5), i % 2 == 0, rng), "CuKa")
                         for i in range(48)], dtype=np.float32)
    labels = np.array([2 if i % 2 == 0 else 1 for i in range(48)])
    with torch.no_grad():
        out, features = forward_with_features(model, torch.from_numpy(profiles))
    cal = calibrate_members(out["logits"][None, 24:].numpy(), labels[24:], [features[24:]], [features[:24]])
    base = {"model": "spgvolnet", "range": "inf", "fold": 1, "seed": 1, "spacegroups": GROUPS,
            "u_mean": 2.5, "u_std": 0.3}
    root = tmp_path_factory.mktemp("verdict_models")
    cal = cal | {"temperature": 2.0}  # the fitted one is of no interest for random weights; 2 shows clearly
    calibrated = base | member_meta(cal, 0)
    metas = {"plain": base,
             "calibrated": calibrated | {"verdict_thresholds": calibrated["verdict_thresholds"]
                                         | {"confidence_threshold": 0.0, "ood_threshold": 1e6}},
             "outside": calibrated | {"verdict_thresholds": calibrated["verdict_thresholds"]
                                      | {"confidence_threshold": 0.0, "ood_threshold": 1e-9}}}
    for name, meta in metas.items():
        save_torch({"state_dict": model.state_dict(), "meta": meta},
                   root / name / "spgvolnet" / "inf" / "fold1" / "seed1" / "model.pt")
    (root / "nacl.txt").write_text(NACL_PEAKS)
    return root, cal


def test_predict_xrd_without_calibration_still_works(xrd_models, tmp_path, capsys):
    root, _ = xrd_models
    out = tmp_path / "plain.csv"
    assert main(["predict-xrd", str(root / "nacl.txt"), "--wavelength", "CuKa", "--peak-list",
                 "--models", str(root / "plain"), "--top", "3", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verdict: uncertain (model has no calibration)" in printed
    assert "crystal systems (sum of their space groups' probabilities): " in printed
    ranking = pd.read_csv(out)
    assert set(ranking["verdict"]) == {"uncertain"} and ranking["ood_score"].isna().all()
    assert set(ranking["crystal_system"]) <= {"tetragonal", "cubic"}
    document = json.loads(out.with_suffix(".json").read_text())
    assert document["verdict"] == "uncertain" and document["notes"] == ["model has no calibration"]
    assert document["thresholds"] is None and document["temperatures"] == [None]


def test_predict_xrd_with_calibration_writes_verdict_systems_and_json(xrd_models, tmp_path, capsys):
    root, cal = xrd_models
    out, doc = tmp_path / "r" / "ranking.csv", tmp_path / "elsewhere.json"
    assert main(["predict-xrd", str(root / "nacl.txt"), "--wavelength", "CuKa", "--peak-list", "--models",
                 str(root / "calibrated"), "--top", "3", "--n-atoms", "2", "--out", str(out), "--json", str(doc)]) == 0
    printed = capsys.readouterr().out
    assert "verdict: confident (top p " in printed and "of the outside threshold)" in printed
    assert f"temperature {round(cal['temperature'], 3):g}" in printed
    ranking = pd.read_csv(out)
    assert {"verdict", "ood_score", "crystal_system", "volume"} <= set(ranking.columns)
    assert set(ranking["verdict"]) == {"confident"} and (ranking["ood_score"] > 0).all()
    systems = pd.read_csv(tmp_path / "r" / "ranking_crystal_systems.csv")
    assert systems["crystal_system"].tolist()[0] in ("cubic", "tetragonal")
    assert systems["probability"].sum() == pytest.approx(1.0, abs=1e-5)
    document = json.loads(doc.read_text())
    assert not (tmp_path / "r" / "ranking.json").exists()  # --json decides where
    assert document["verdict"] == "confident" and document["ood_score"] == pytest.approx(ranking["ood_score"][0])
    assert document["crystal_systems"][0]["crystal_system"] == systems["crystal_system"][0]
    assert [r["spacegroup"] for r in document["ranking"]] == ranking["spacegroup"].tolist()
    assert document["thresholds"]["ood_threshold"] == 1e6 and document["temperatures"][0] == cal["temperature"]
    # the temperature is applied: the probabilities are those of softmax(logits / T)
    from xtalspec.prediction.xrd import predict_pattern

    result = predict_pattern(root / "nacl.txt", "CuKa", root / "calibrated", top=3, peak_list=True)
    plain = predict_pattern(root / "nacl.txt", "CuKa", root / "plain", top=3, peak_list=True)
    logits = np.log(plain.ranking.sort_values("spacegroup")["p_ensemble"].to_numpy())
    expected = ensemble_probabilities(logits[None], cal["temperature"])[0]
    assert result.ranking.sort_values("spacegroup")["p_ensemble"].to_numpy() == pytest.approx(expected, abs=1e-5)
    assert result.assessment.ood_score == pytest.approx(document["ood_score"])
    assert np.ptp(plain.ranking["p_ensemble"]) > 0.2 and np.ptp(expected) < np.ptp(plain.ranking["p_ensemble"])


def test_predict_xrd_outside(xrd_models):
    from xtalspec.prediction.xrd import predict_pattern

    root, _ = xrd_models
    result = predict_pattern(root / "nacl.txt", "CuKa", root / "outside", top=3, peak_list=True)
    assert result.verdict == "outside" and "unlike the training data" in result.text


def test_validate_reports_verdicts_and_crystal_systems(xrd_models, tmp_path):
    root, _ = xrd_models
    (tmp_path / "nacl.txt").write_text(NACL_PEAKS)
    (tmp_path / "broken.txt").write_text("nothing here\n")
    (tmp_path / "LABELS.csv").write_text("file,label,wavelength,peak_list\nnacl.txt,225,CuKa,true\n"
                                         "nacl.txt,62,CuKa,true\nbroken.txt,225,CuKa,true\n")
    out = tmp_path / "out"
    assert main(["validate", "xrd", str(tmp_path / "LABELS.csv"), "--models", str(root / "outside"),
                 "--out-dir", str(out)]) == 0
    per_file = pd.read_csv(out / "per_file.csv")
    assert per_file["verdict"].tolist()[:2] == ["outside", "outside"] and pd.isna(per_file["verdict"][2])
    assert {"predicted_system", "predicted_system_by_sum", "ood_score", "rank", "top"} <= set(per_file.columns)
    assert per_file["predicted_system_by_sum"][0] in ("cubic", "tetragonal")
    summary = json.loads((out / "summary.json").read_text())
    v = summary["verdicts"]
    assert v["by_verdict"]["outside"]["n"] == 2 and v["by_verdict"]["confident"]["n"] == 0
    assert v["label_not_in_classes"] == {"n": 1, "confident": 0, "uncertain": 0, "outside": 1}
    assert "Accuracy against coverage by verdict" in (out / "summary.md").read_text()


def test_summary_accuracy_against_coverage_by_verdict():
    per_file = pd.DataFrame({
        "file": list("abcdefg"), "label": [225] * 7, "predicted": [225] * 7,
        "status": ["ok"] * 6 + ["error"], "rank": [1, 1, 2, 1, None, 3, None],
        "in_classes": [True, True, True, True, False, True, None],
        "system": ["cubic"] * 7, "predicted_system": ["cubic"] * 6 + [None],
        "predicted_system_by_sum": ["cubic", "cubic", "tetragonal", "cubic", "cubic", "cubic", None],
        "verdict": ["confident", "confident", "confident", "uncertain", "outside", "uncertain", None],
        "seconds": [0.1] * 7, "reason": [""] * 6 + ["unreadable"]})
    summary = summarise(per_file, "xrd")
    v = summary["verdicts"]
    assert v["by_verdict"]["confident"] == {"n": 3, "top1": pytest.approx(2 / 3)}
    assert v["top1_confident"] == pytest.approx(2 / 3) and v["coverage_confident"] == pytest.approx(3 / 6)
    assert v["top1_confident_or_uncertain"] == pytest.approx(3 / 5) and v["coverage_confident_or_uncertain"] == 5 / 6
    assert v["label_not_in_classes"]["n"] == 1 and v["label_not_in_classes"]["outside"] == 1
    assert summary["crystal_system_by_sum_top1_all"] == pytest.approx(5 / 7)
    text = markdown(per_file, summary)
    assert "| confident | 3 | 50 % | 67 % |" in text and "| confident + uncertain | 5 | 83 % | 60 % |" in text
    assert "1 were marked uncertain and" not in text and "0 were marked uncertain and 1 outside" in text


def test_predict_pdf_with_and_without_calibration(tmp_path, capsys):
    from xtalspec.models.pdfnet import PDFNet
    from xtalspec.prediction.pdf import predict_pdf

    torch.manual_seed(0)
    groups = [14, 62, 221, 225]
    model = PDFNet(len(groups)).eval()
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((80, 209)).astype(np.float32))
    with torch.no_grad():
        out, features = forward_with_features(model, x)
    cal = calibrate_members(out["logits"][40:].numpy(), rng.integers(0, 4, 40), [features[40:]], [features[:40]])
    save_torch({"state_dict": model.state_dict(), "meta": {"model": "pdfnet", "spacegroups": groups}},
               tmp_path / "plain" / "standard" / "model.pt")
    save_torch({"state_dict": model.state_dict(), "meta": {"model": "pdfnet", "spacegroups": groups}
                | member_meta(cal, 0)}, tmp_path / "calibrated" / "standard" / "model.pt")
    r = np.arange(0.5, 30, 0.01)
    (tmp_path / "sample.gr").write_text("\n".join(f"{a:.3f} {np.sin(3 * a) * np.exp(-0.05 * a):.5f}" for a in r))
    plain = predict_pdf(tmp_path / "sample.gr", tmp_path / "plain")
    assert plain.verdict == "uncertain" and "model has no calibration" in plain.text
    assert plain.crystal_systems["probability"].sum() == pytest.approx(1.0, abs=1e-5)
    out_csv = tmp_path / "pdf.csv"
    assert main(["predict-pdf", str(tmp_path / "sample.gr"), "--models", str(tmp_path / "calibrated"),
                 "--out", str(out_csv)]) == 0
    printed = capsys.readouterr().out
    assert "verdict: " in printed and "crystal systems" in printed
    ranking = pd.read_csv(out_csv)
    assert {"verdict", "ood_score", "crystal_system", "p_mean", "p_standard"} <= set(ranking.columns)
    assert ranking["verdict"].iloc[0] in VERDICTS and np.isfinite(ranking["ood_score"]).all()
    document = json.loads(out_csv.with_suffix(".json").read_text())
    assert document["kind"] == "pdf" and document["verdict"] == ranking["verdict"].iloc[0]
    assert (tmp_path / "pdf_crystal_systems.csv").exists()
