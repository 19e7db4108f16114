"""Reader-study statistics: the Obuchowski-Rockette MRMC analysis (published example, an independent DBM ANOVA in
statsmodels, coverage by simulation, degenerate designs) and the per-reader summary (hand count, Wilson)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from medimg_demo.feedback.mrmc import ORComponents, jackknife_covariance, or_analysis, or_test
from medimg_demo.feedback.reader_study import (CANNOT_ASSESS, LEGEND, POOLED, case_table, design_effect_wilson,
                                               display_summary, reader_summary, session_mrmc, unaided_seen_before,
                                               wilson, wilson_p)


def simulate(rng: np.random.Generator, readers: int, cases: int, effect: float = 0.0) -> np.ndarray:
    """0/1 correctness (2 modalities x readers x cases) from a logistic model with random reader, case,
    modality x reader and modality x case effects; ``effect`` shifts the second modality's logit."""
    r_eff, c_eff = rng.normal(0, 0.4, readers), rng.normal(0, 1.2, cases)
    tr, tc = rng.normal(0, 0.2, (2, readers)), rng.normal(0, 0.5, (2, cases))
    eta = (1.0 + np.array([0.0, effect])[:, None, None] + r_eff[None, :, None] + c_eff[None, None, :]
           + tr[:, :, None] + tc[:, None, :])
    return (rng.random((2, readers, cases)) < 1 / (1 + np.exp(-eta))).astype(int)


def test_or_reproduces_the_published_mrmcaov_example() -> None:
    """Smith & Hillis, MRMCaov user guide / JSS manuscript: VanDyke data, binary_sens(truth, rating >= 3), 5 readers
    x 45 diseased cases, jackknife. Published: F = 6.689493, df2 = 15.71732, p = 0.02008822, difference (1 - 2)
    -0.09777778 [-0.1780371, -0.0175185], SE 0.03780451; treatment 1: 0.8222222 [0.6961876, 0.9482568] df
    14.456811; treatment 2: 0.92 [0.8328691, 1 (truncated)] df 7.575855."""
    fom = np.array([[40, 35, 37, 42, 31], [44, 37, 41, 45, 40]]) / 45  # the printed sensitivities are k/45
    comp = ORComponents(var=0.0023681257, cov1=0.0009943883, cov2=0.0010145903, cov3=0.0006604938,
                        cov2_each=(0.001646465, 0.000382716))
    res = or_test(fom, comp)
    assert res["ms_t"] == pytest.approx(0.02390123, rel=1e-6)
    assert res["ms_tr"] == pytest.approx(0.001802469, rel=1e-6)
    assert res["f"] == pytest.approx(6.689493, rel=1e-6)
    assert res["ddf"] == pytest.approx(15.71732, rel=1e-6)
    assert res["p"] == pytest.approx(0.02008822, rel=1e-5)
    assert res["se"] == pytest.approx(0.03780451, rel=1e-6)
    assert res["difference"] == pytest.approx(0.09777778, rel=1e-6)  # ours is aided - unaided: 2 - 1
    assert res["ci"] == pytest.approx((0.0175185, 0.1780371), rel=1e-5)
    (e1, lo1, hi1, df1), (e2, lo2, _, df2) = res["single"]
    assert (e1, lo1, hi1, df1) == pytest.approx((0.8222222, 0.6961876, 0.9482568, 14.456811), rel=1e-5)
    assert (e2, lo2, df2) == pytest.approx((0.92, 0.8328691, 7.575855), rel=1e-5)


def test_jackknife_covariance_of_accuracy_is_the_sample_covariance_over_n() -> None:
    """For a proportion the leave-one-out values are (S - x_k)/(c - 1), so the jackknife covariance reduces to the
    ordinary (n - 1) sample covariance of the 0/1 indicators divided by c: a closed form to check the loop against."""
    x = simulate(np.random.default_rng(3), 4, 25)
    expected = np.cov(x.reshape(8, 25), ddof=1) / 25
    assert np.allclose(jackknife_covariance(x), expected, atol=1e-15)


def test_or_equals_the_dbm_anova_of_pseudovalues_in_statsmodels() -> None:
    """Independent route (Hillis et al. 2005, Stat Med 24:1579): DBM on jackknife pseudovalues with Hillis's ddf
    gives the OR-jackknife F and ddf exactly. For accuracy the pseudovalues are the 0/1 indicators themselves;
    their three-way ANOVA (modality x reader x case, one read per cell) comes from statsmodels."""
    sm = pytest.importorskip("statsmodels.formula.api")
    anova_lm = pytest.importorskip("statsmodels.stats.anova").anova_lm
    for seed, (r, c, effect) in enumerate([(3, 20, 0.0), (4, 30, 0.8), (6, 25, -0.5)]):
        x = simulate(np.random.default_rng(100 + seed), r, c, effect)
        t_i, r_i, c_i = np.meshgrid(range(2), range(r), range(c), indexing="ij")
        df = pd.DataFrame({"y": x.ravel().astype(float), "m": t_i.ravel(), "r": r_i.ravel(), "c": c_i.ravel()})
        fit = sm.ols("y ~ C(m) + C(r) + C(c) + C(m):C(r) + C(m):C(c) + C(r):C(c)", data=df).fit()
        ms = anova_lm(fit, typ=1)
        ms = ms["sum_sq"] / ms["df"]
        ms_t, ms_tr, ms_tc, ms_trc = ms["C(m)"], ms["C(m):C(r)"], ms["C(m):C(c)"], ms["Residual"]
        den = ms_tr + max(ms_tc - ms_trc, 0.0)
        f_dbm, ddf_dbm = ms_t / den, den ** 2 / (ms_tr ** 2 / (r - 1))
        res = or_analysis(x)
        assert res.ok, res.message
        print(f"\n{r} readers x {c} cases: OR F {res.f:.6f} ddf {res.ddf:.4f}; DBM (statsmodels) F {f_dbm:.6f} "
              f"ddf {ddf_dbm:.4f}")
        assert res.f == pytest.approx(f_dbm, rel=1e-9) and res.ddf == pytest.approx(ddf_dbm, rel=1e-9)


def test_no_effect_interval_covers_zero_about_95_percent() -> None:
    rng = np.random.default_rng(2026)
    for readers, cases in ((3, 20), (4, 30)):
        results = [or_analysis(simulate(rng, readers, cases)) for _ in range(400)]
        done = [r for r in results if r.ok]
        coverage = np.mean([r.ci[0] <= 0 <= r.ci[1] for r in done])
        rejected = np.mean([r.p < 0.05 for r in done])
        print(f"\n{readers} readers x {cases} cases, no effect: 95% CI covers 0 in {coverage:.3f} of {len(done)} "
              f"simulations (type I error {rejected:.3f}; {len(results) - len(done)} without variability)")
        assert len(done) >= 390 and 0.91 <= coverage <= 0.985
        assert all(math.isfinite(r.p) and math.isfinite(r.ddf) for r in done)


def test_a_strong_effect_is_detected() -> None:
    rng = np.random.default_rng(7)
    res = [or_analysis(simulate(rng, 4, 30, effect=3.0)) for _ in range(50)]
    power = np.mean([r.p < 0.05 for r in res])
    print(f"\n4 readers x 30 cases, strong effect: p < 0.05 in {power:.2f} of 50 simulations")
    assert power >= 0.9 and all(r.difference > 0 for r in res if r.p < 0.05)
    assert "higher" in res[0].message or res[0].p >= 0.05


@pytest.mark.parametrize("readers, cases", [(1, 20), (2, 40), (3, 19), (0, 0)])
def test_too_few_readers_or_cases_say_so(readers: int, cases: int) -> None:
    res = or_analysis(np.ones((2, readers, cases)))
    assert not res.ok and "Not enough readers" in res.message and "nan" not in res.message.lower()
    assert f"{readers} reader" in res.message


def test_no_variability_gives_a_message_not_nan() -> None:
    x = np.ones((2, 4, 20))  # every reader right on every case in both phases
    res = or_analysis(x)
    assert not res.ok and "No variability" in res.message and "nan" not in res.message.lower()
    x[:, :, 0] = 0  # the same case wrong for everybody, in both phases: still nothing to estimate an error from
    res = or_analysis(x)
    assert not res.ok and "No variability" in res.message


# --------------------------------------------------------------------------------------------- per-reader summary

def _row(reader: str, case: str, phase: str, truth: str, **kw: object) -> dict[str, object]:
    return dict(session_id="S", reader=reader, case_id=case, phase=phase, truth_type=truth, model_id="lung_ct.x",
                **kw)


def _study_rows() -> pd.DataFrame:
    """Reader r1, 5 cases (truth a or b); model right on c1, c2, c3, wrong on c4, c5.
    c1: own a, model a -> agree (a) right/right; c2: own b, model a -> takes model (beneficial);
    c3: own cannot assess, model a -> takes model (beneficial); c4: own a (right), model b -> takes b (automation
    bias; left a correct call); c5: own a, model a(wrong, truth b) -> keeps a."""
    spec = [("c1", "a", "a", "a", 1, None), ("c2", "a", "b", "a", 1, None), ("c3", "a", CANNOT_ASSESS, "a", 1, None),
            ("c4", "a", "a", "b", 1, None), ("c5", "b", "a", "a", 0, "a")]
    rows = []
    for case, truth, own, model, agree, corrected in spec:
        rows.append(_row("r1", case, "unaided", truth, reader_type=own, confidence=3, pred_type=model))
        rows.append(_row("r1", case, "aided", truth, pred_type=model, type_agree=agree, corrected_type=corrected,
                         pred_type_probs='{"%s": 0.8}' % model, confidence=4))
    rows.append(_row("r2", "c1", "unaided", "a", reader_type="b", pred_type="a"))  # no aided read yet: left out
    return pd.DataFrame(rows)


def test_case_table_and_summary_match_a_hand_count() -> None:
    table = case_table(_study_rows())
    assert list(table["case_id"]) == ["c1", "c2", "c3", "c4", "c5"] and set(table["reader"]) == {"r1"}
    assert list(table["aided_call"]) == ["a", "a", "a", "b", "a"] and table.loc[0, "model_probability"] == 0.8
    s = reader_summary(table).set_index("reader")
    r1 = s.loc["r1"]
    assert (r1["unaided_accuracy_k"], r1["unaided_accuracy_n"]) == (2, 5)  # c1, c4 (cannot assess is not correct)
    assert (r1["aided_accuracy_k"], r1["model_accuracy_k"], r1["agreement_k"]) == (3, 3, 5)
    assert (r1["automation_bias_k"], r1["automation_bias_n"]) == (1, 1)  # c4 (c5: own call equalled the model's)
    assert (r1["beneficial_switch_k"], r1["beneficial_switch_n"]) == (2, 2)  # c2, c3
    assert (r1["left_correct_k"], r1["left_correct_n"]) == (1, 2)  # c4
    assert (r1["unaided_accuracy_lo"], r1["unaided_accuracy_hi"]) == pytest.approx(wilson(2, 5))
    for name in ("unaided_accuracy", "aided_accuracy", "automation_bias"):  # one reader: the same interval pooled
        assert s.loc[POOLED, [f"{name}_lo", f"{name}_hi"]].tolist() == pytest.approx(r1[[f"{name}_lo", f"{name}_hi"]])
    assert s.loc[POOLED, "reads"] == 5 and s.loc[POOLED, "readers"] == 1


def test_an_unaided_read_after_the_model_was_seen_on_that_image_is_left_out() -> None:
    """A throwaway session with the same seed showed a reader the model's calls on the cases of the session still to
    be read (thirty-eighth session's note): such reads are no longer unaided. Left out of the rates and of the
    multi-reader analysis, and counted; so is a read after Analyse-tab feedback on the same image. Reads before any
    such answer, or by another reader, stay."""
    def at(minute: int) -> str:
        return f"2026-11-29T10:{minute:02d}:00.000+00:00"

    base = _study_rows().assign(image_sha256=lambda d: d["case_id"] + "-hash",
                                created_utc=[at(2 * i + 1) for i in range(len(_study_rows()))])
    throwaway = base.assign(session_id="T")  # the same cases, read first (minutes 1-11)
    real = base.assign(session_id="S", created_utc=[at(30 + i) for i in range(len(base))])
    free = pd.DataFrame([dict(session_id="", reader="r1", case_id="", phase="free", image_sha256="c1-hash",
                              created_utc=at(0), type_agree=1)])  # the model's call on c1 seen on the Analyse tab
    table = case_table(pd.concat([throwaway, real, free], ignore_index=True))
    flags = table.set_index(["session_id", "reader", "case_id"])["model_seen_before"]
    assert flags.loc[("T", "r1")].tolist() == [1, 0, 0, 0, 0] and flags.loc[("S", "r1")].tolist() == [1, 1, 1, 1, 1]
    summary = reader_summary(table).set_index(["session_id", "reader"])
    assert summary.loc[("S", "r1"), "model_seen_before"] == 5 and summary.loc[("S", "r1"), "reads"] == 0
    assert summary.loc[("T", "r1"), "model_seen_before"] == 1 and summary.loc[("T", "r1"), "unaided_accuracy_n"] == 4
    shown = display_summary(reader_summary(table), "S").set_index("Statistic")
    assert shown.loc["Left out: model's call on the image seen before the unaided read (reads)", "r1"] == "5"
    assert shown.loc["Accuracy unaided", "r1"] == "-"
    # a read left out takes its case out of the multi-reader analysis (it pairs every reader's reads of a case)
    rng = np.random.default_rng(5)
    x = simulate(rng, 3, 20, effect=1.0)
    rows = pd.DataFrame([dict(session_id="M", reader=f"r{j}", case_id=f"c{k:02d}", unaided_correct=int(x[0, j, k]),
                              aided_correct=int(x[1, j, k]), model_seen_before=int(j == 2 and k == 0))
                         for j in range(3) for k in range(20)])
    assert session_mrmc(rows, "M", min_cases=19).n_cases == 19 and session_mrmc(rows.assign(model_seen_before=0),
                                                                                  "M").n_cases == 20
    first_reads = real[real["phase"] == "unaided"]  # nothing shown yet (a fresh store): nothing left out, no error
    assert not case_table(first_reads).shape[0] and not unaided_seen_before(first_reads).any()
    later = free.assign(created_utc=at(59))  # Analyse-tab feedback after the reads, or another reader's: none
    assert case_table(pd.concat([real, later], ignore_index=True))["model_seen_before"].sum() == 0
    assert case_table(pd.concat([real, free.assign(reader="r2")], ignore_index=True))["model_seen_before"].sum() == 0
    # the same pseudonym in other capitals is the same reader; an answer on a refused image showed no call
    assert case_table(pd.concat([free.assign(reader="R1"), real], ignore_index=True))["model_seen_before"].sum() == 1
    refused = free.assign(pred_status="refused")
    assert case_table(pd.concat([refused, real], ignore_index=True))["model_seen_before"].sum() == 0


def test_agreeing_with_a_model_that_named_no_type_keeps_the_own_call() -> None:
    rows = pd.DataFrame([
        _row("r1", "c1", "unaided", "a", reader_type="a"), _row("r1", "c1", "aided", "a", pred_type=None, type_agree=1),
        _row("r1", "c2", "unaided", "a", reader_type="b"),
        _row("r1", "c2", "aided", "a", pred_type=None, type_agree=0, corrected_type="a"),
        _row("r1", "c3", "unaided", "b", reader_type="a"),
        _row("r1", "c3", "aided", "b", pred_type="b", type_agree=None),
    ])
    table = case_table(rows)  # c3: no aided answer (a row from before answers were required): left out
    assert list(table["aided_call"]) == ["a", "a"] and list(table["model_correct"]) == [0, 0]
    assert list(table["aided_matches_model"]) == [0, 0]


def test_pooled_interval_accounts_for_readers_reading_the_same_cases() -> None:
    """Three readers who agree on every case carry the information of one reader: the pooled interval of 3 x 20
    identical reads is the Wilson interval of about 20 reads (19: the cluster variance carries m / (m - 1)), not of
    60; readers that vary independently get deff close to 1."""
    rows = [dict(session_id="S", reader=f"r{j}", case_id=f"c{k:02d}", ok=int(k < 14))
            for j in range(3) for k in range(20)]
    t = pd.DataFrame(rows)
    assert design_effect_wilson(t, "ok", None) == pytest.approx(wilson_p(14 / 20, 19), abs=1e-9)
    rng = np.random.default_rng(0)
    t["ok"] = (rng.random(60) < 0.7).astype(int)
    lo, hi = design_effect_wilson(t, "ok", None)
    naive = wilson(int(t["ok"].sum()), 60)
    assert hi - lo >= naive[1] - naive[0] - 1e-12 and hi - lo < (naive[1] - naive[0]) * 1.3


def test_wilson_matches_statsmodels() -> None:
    proportion_confint = pytest.importorskip("statsmodels.stats.proportion").proportion_confint
    for k, n in ((0, 20), (3, 20), (17, 20), (20, 20), (1, 1), (45, 114)):
        assert wilson(k, n) == pytest.approx(proportion_confint(k, n, alpha=0.05, method="wilson"), abs=1e-6)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_display_summary_is_readable_with_counts_and_a_legend() -> None:
    shown = display_summary(reader_summary(case_table(_study_rows())))
    assert list(shown.columns) == ["Statistic", "r1", POOLED]
    rows = shown.set_index("Statistic")
    assert "Accuracy unaided" in rows.index and "Took the model's wrong call (automation bias)" in rows.index
    assert not any("_" in c for c in rows.index)
    unaided = rows.loc["Accuracy unaided", "r1"]
    assert unaided.startswith("0.40 [") and unaided.endswith("(2/5)")
    assert rows.loc["Cases read (in the rates below)", "r1"] == "5"
    assert "automation bias" in LEGEND and "design effect" in LEGEND and "Wilson" in LEGEND
    empty = display_summary(reader_summary(case_table(_study_rows()[lambda d: d["case_id"].isin(["c1", "c2"])])))
    assert empty.set_index("Statistic").loc["Took the model's wrong call (automation bias)", "r1"] == "-"


def test_session_mrmc_needs_three_readers_and_twenty_cases() -> None:
    rng = np.random.default_rng(5)
    x = simulate(rng, 3, 20, effect=1.0)
    rows = [dict(session_id="S", reader=f"r{j}", case_id=f"c{k:02d}", unaided_correct=int(x[0, j, k]),
                 aided_correct=int(x[1, j, k])) for j in range(3) for k in range(20)]
    table = pd.DataFrame(rows)
    res = session_mrmc(table, "S")
    assert res.ok and res.n_readers == 3 and res.n_cases == 20 and "Obuchowski-Rockette" in res.message
    assert res.f == pytest.approx(or_analysis(x).f)
    short = session_mrmc(table[table["reader"] != "r2"], "S")
    assert not short.ok and "Not enough readers" in short.message and "2 readers" in short.message


def test_a_session_named_as_mathtext_draws_as_text_and_many_readers_are_capped() -> None:
    """A session id is typed by a reader: "$\\foo$" once failed the figure (matplotlib's mathtext), and with it the
    whole summary tab; 400 readers made a figure too tall for the WebP Gradio sends."""
    from medimg_demo.feedback import study_plots

    base = _study_rows()
    for name in ("$\\foo$", "$x^$", "a" * 200):
        rows = base.assign(session_id=name)
        fig = study_plots.accuracy_figure(reader_summary(case_table(rows)), name)
        fig.canvas.draw()  # a mathtext error would raise here
        assert fig.axes[0].get_title().startswith("Session " + name[:59])
    many = pd.concat([base[base["reader"] == "r1"].assign(reader=f"r{k:03d}") for k in range(60)])
    fig = study_plots.accuracy_figure(reader_summary(case_table(many)), "S")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert len(labels) == study_plots.MAX_READERS_DRAWN + 1 and labels[-1].startswith("All readers (60)")
    assert "20 more readers in the table" in fig.axes[0].get_title()
    assert fig.get_size_inches()[1] < 25


def test_a_wilson_interval_holds_its_rate_and_an_all_correct_reader_is_drawn() -> None:
    """4 of 4 had an upper end of 0.9999999999999999, below the rate 1.0: the plot's error bar was negative and the
    Feedback summary showed an empty plot for every session with such a reader (clinician walkthrough)."""
    from medimg_demo.feedback import study_plots
    from medimg_demo.feedback.reader_study import wilson, wilson_p

    for n in range(1, 301):
        for k in (0, 1, n // 2, n - 1, n):
            lo, hi = wilson(k, n)
            assert 0.0 <= lo <= k / n <= hi <= 1.0, (k, n, lo, hi)
    for p, n in ((1.0, 3.7), (0.0, 2.2), (1.0, 4.0)):
        lo, hi = wilson_p(p, n)
        assert lo <= p <= hi
    perfect = []  # 4 of 4 right, unaided and aided, as the helper's reader was
    for case, truth in (("c1", "a"), ("c2", "a"), ("c3", "a"), ("c4", "b")):
        perfect.append(_row("perfect", case, "unaided", truth, reader_type=truth, confidence=3, pred_type=truth))
        perfect.append(_row("perfect", case, "aided", truth, pred_type=truth, type_agree=1,
                            pred_type_probs='{"%s": 0.9}' % truth, confidence=4))
    summary = reader_summary(case_table(pd.concat([_study_rows(), pd.DataFrame(perfect)])))
    assert summary.set_index("reader").loc["perfect", "aided_accuracy"] == 1.0
    session = str(summary["session_id"].iloc[0])
    fig = study_plots.accuracy_figure(summary, session)
    fig.canvas.draw()
    assert any(t.get_text().startswith("perfect") for t in fig.axes[0].get_yticklabels())
