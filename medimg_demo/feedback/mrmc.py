"""Multi-reader multi-case (MRMC) comparison of two reading conditions (unaided vs aided): the Obuchowski-Rockette
(OR) model with jackknife covariance estimates and Hillis's denominator degrees of freedom; readers and cases random.

The figure of merit (FOM) is accuracy, the proportion of cases read correctly, per reader j and modality i. With
t = 2 modalities, r readers and c cases read by every reader in both modalities (a factorial design):

* Covariances of the FOMs over cases by the jackknife (Efron 1982): leaving case k out gives theta_ij(k), and
  ``cov(theta_ij, theta_i'j') = (c-1)/c * sum_k (theta_ij(k) - mean_k theta_ij(.)) (theta_i'j'(k) - ...)``.
  Averaged over the pairs they give Var (same i, j), Cov1 (different modality, same reader), Cov2 (same modality,
  different readers) and Cov3 (different modality, different readers) (Obuchowski and Rockette 1995).
* ``MS(T) = r * sum_i (theta_i. - theta..)^2 / (t-1)``;
  ``MS(TR) = sum_ij (theta_ij - theta_i. - theta.j + theta..)^2 / ((t-1)(r-1))``.
* ``F = MS(T) / (MS(TR) + r * max(Cov2 - Cov3, 0))`` on (t-1, ddf_H) degrees of freedom, with Hillis's
  ``ddf_H = (MS(TR) + r * max(Cov2 - Cov3, 0))^2 / (MS(TR)^2 / ((t-1)(r-1)))`` (Hillis 2007, "A comparison of
  denominator degrees of freedom methods for multiple observer ROC analysis", Stat Med 26:596-619, eq. 9;
  Hillis, Berbaum and Metz 2008, Acad Radiol 15:647-661, Table 1).
* Difference ``theta_2. - theta_1.`` with standard error ``sqrt(2/r * (MS(TR) + r * max(Cov2 - Cov3, 0)))`` and a
  95% interval from Student's t on ddf_H; per modality, ``SE_i = sqrt(MS(R)_i / r + max(Cov2_i, 0))`` on
  ``(MS(R)_i + r max(Cov2_i, 0))^2 / (MS(R)_i^2 / (r-1))`` degrees of freedom (Hillis 2007, section 5).

Checked in tests/feedback/test_reader_study.py against the published MRMCaov example (Smith and Hillis; VanDyke
data, binary sensitivity, jackknife) and against the Dorfman-Berbaum-Metz ANOVA of the pseudovalues (statsmodels),
which Hillis et al. (2005, Stat Med 24:1579-1607) showed to equal OR with jackknife covariances.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import stats

log = logging.getLogger(__name__)

MIN_READERS = 3
MIN_CASES = 20


@dataclass(frozen=True)
class ORComponents:
    """The OR error variance and covariances of the FOMs (over cases), and the per-modality Cov2."""

    var: float
    cov1: float
    cov2: float
    cov3: float
    cov2_each: tuple[float, ...] = ()


@dataclass(frozen=True)
class MRMCResult:
    """The OR analysis, or (``ok`` False) why it could not be done; ``message`` is a one-line verdict either way."""

    ok: bool
    message: str
    n_readers: int
    n_cases: int
    modalities: tuple[str, str] = ("unaided", "aided")
    fom: np.ndarray | None = None  # (2, r): accuracy per modality and reader
    means: tuple[float, float] = (math.nan, math.nan)
    difference: float = math.nan  # modalities[1] - modalities[0]
    ci: tuple[float, float] = (math.nan, math.nan)
    se: float = math.nan
    t: float = math.nan
    f: float = math.nan
    df1: int = 1
    ddf: float = math.nan
    p: float = math.nan
    ms_t: float = math.nan
    ms_tr: float = math.nan
    components: ORComponents | None = None
    #: per modality: (estimate, lower, upper, df) from that modality's data alone
    single: tuple[tuple[float, float, float, float], ...] = field(default_factory=tuple)


def jackknife_covariance(correct: np.ndarray) -> np.ndarray:
    """Jackknife covariance matrix of the accuracies of ``correct`` (modalities x readers x cases, 0/1), indexed
    modality-major (i * r + j). Leave-one-case-out accuracies are exact: (sum - x_k) / (c - 1)."""
    x = np.asarray(correct, dtype=float)
    t, r, c = x.shape
    loo = (x.sum(axis=2, keepdims=True) - x) / (c - 1)  # theta_ij(k), shape (t, r, c)
    dev = (loo - loo.mean(axis=2, keepdims=True)).reshape(t * r, c)
    return (c - 1) / c * dev @ dev.T


def or_components(cov: np.ndarray, t: int, r: int) -> ORComponents:
    """Var, Cov1, Cov2, Cov3 as averages of the matching entries of the FOM covariance matrix."""
    idx = [(i, j) for i in range(t) for j in range(r)]
    groups: dict[str, list[float]] = {"var": [], "cov1": [], "cov2": [], "cov3": []}
    each: list[list[float]] = [[] for _ in range(t)]
    for a, (i, j) in enumerate(idx):
        for b, (i2, j2) in enumerate(idx):
            key = "var" if (i, j) == (i2, j2) else "cov1" if j == j2 else "cov2" if i == i2 else "cov3"
            groups[key].append(float(cov[a, b]))
            if key == "cov2":
                each[i].append(float(cov[a, b]))
    mean = {k: float(np.mean(v)) if v else math.nan for k, v in groups.items()}
    return ORComponents(mean["var"], mean["cov1"], mean["cov2"], mean["cov3"],
                        tuple(float(np.mean(e)) if e else math.nan for e in each))


def or_test(fom: np.ndarray, comp: ORComponents, alpha: float = 0.05) -> dict[str, float | tuple]:
    """The OR F test (Hillis ddf) of two modalities from the FOMs (2 x r) and the OR covariances; also the
    difference (modality 2 - modality 1) with its interval, and each modality's interval on its own."""
    fom = np.asarray(fom, dtype=float)
    t, r = fom.shape
    if t != 2:
        raise ValueError("or_test compares exactly two modalities")
    mi, mj, m = fom.mean(axis=1), fom.mean(axis=0), fom.mean()
    ms_t = r * float(((mi - m) ** 2).sum()) / (t - 1)
    ms_tr = float(((fom - mi[:, None] - mj[None, :] + m) ** 2).sum()) / ((t - 1) * (r - 1))
    den = ms_tr + r * max(comp.cov2 - comp.cov3, 0.0)
    out: dict[str, float | tuple] = {"ms_t": ms_t, "ms_tr": ms_tr, "den": den, "difference": float(mi[1] - mi[0]),
                                     "means": (float(mi[0]), float(mi[1]))}
    if not den > 0:
        return out
    ddf = den ** 2 / (ms_tr ** 2 / ((t - 1) * (r - 1))) if ms_tr > 0 else math.inf
    se = math.sqrt(2.0 / r * den)
    tval = out["difference"] / se  # type: ignore[operator]
    q = float(stats.t.ppf(1 - alpha / 2, ddf))
    single = []
    for i in range(t):
        ms_r = float(((fom[i] - mi[i]) ** 2).sum()) / (r - 1)
        c2 = max(comp.cov2_each[i], 0.0) if comp.cov2_each else max(comp.cov2, 0.0)
        se_i = math.sqrt(ms_r / r + c2)
        df_i = (ms_r + r * c2) ** 2 / (ms_r ** 2 / (r - 1)) if ms_r > 0 else math.inf
        q_i = float(stats.t.ppf(1 - alpha / 2, df_i))
        single.append((float(mi[i]), float(mi[i] - q_i * se_i), float(mi[i] + q_i * se_i), float(df_i)))
    out.update(ddf=float(ddf), se=se, t=float(tval), f=ms_t / den, p=float(2 * stats.t.sf(abs(tval), ddf)),
               ci=(out["difference"] - q * se, out["difference"] + q * se),  # type: ignore[operator]
               single=tuple(single))
    return out


def _not_enough(r: int, c: int, min_readers: int, min_cases: int, modalities: tuple[str, str]) -> MRMCResult:
    msg = (f"Not enough readers for a multi-reader multi-case analysis: {r} reader{'s' * (r != 1)} x {c} cases read "
           f"by every reader both {modalities[0]} and {modalities[1]}; it needs at least {min_readers} readers who "
           f"each read the same {min_cases} or more cases. Invite more readers to this session (same session id, "
           "model, number of cases and seed).")
    return MRMCResult(ok=False, message=msg, n_readers=r, n_cases=c, modalities=modalities)


def or_analysis(correct: np.ndarray, modalities: tuple[str, str] = ("unaided", "aided"), alpha: float = 0.05,
                min_readers: int = MIN_READERS, min_cases: int = MIN_CASES) -> MRMCResult:
    """OR analysis of accuracy from ``correct`` (2 modalities x r readers x c cases, 0/1; every reader read every
    case in both modalities). Too few readers or cases, or no variability at all, give ``ok=False`` and a message
    that says so (never NaN figures presented as results)."""
    x = np.asarray(correct, dtype=float)
    if x.ndim != 3 or x.shape[0] != 2:
        raise ValueError("correct must be shaped (2 modalities, readers, cases)")
    _, r, c = x.shape
    if r < max(min_readers, 2) or c < max(min_cases, 2):
        return _not_enough(r, c, min_readers, min_cases, modalities)
    if not np.isin(x, (0.0, 1.0)).all():
        raise ValueError("correct must hold 0/1 (wrong/right) for every reader, case and modality")
    fom = x.mean(axis=2)
    comp = or_components(jackknife_covariance(x), 2, r)
    res = or_test(fom, comp, alpha)
    base = dict(n_readers=r, n_cases=c, modalities=modalities, fom=fom, means=res["means"],
                difference=res["difference"], ms_t=res["ms_t"], ms_tr=res["ms_tr"], components=comp)
    if "f" not in res:
        d = float(res["difference"])  # type: ignore[arg-type]
        msg = (f"No variability to test: every reader's accuracy is {fom[0, 0]:.2f} {modalities[0]} and "
               f"{fom[1, 0]:.2f} {modalities[1]} with the same cases right and wrong, so the difference ({d:+.2f}) "
               "has no estimable error; more readers or harder cases are needed for a test.")
        return MRMCResult(ok=False, message=msg, **base)  # type: ignore[arg-type]
    result = MRMCResult(ok=True, message="", se=res["se"], t=res["t"], f=res["f"], ddf=res["ddf"], p=res["p"],
                        ci=res["ci"], single=res["single"], **base)  # type: ignore[arg-type]
    log.info("OR MRMC: %d readers x %d cases, difference %.3f, F(1, %.1f) = %.3f, p = %.4f", r, c,
             result.difference, result.ddf, result.f, result.p)
    return replace(result, message=verdict(result, alpha))


def verdict(res: MRMCResult, alpha: float = 0.05) -> str:
    """One short markdown paragraph: the difference, its interval, the test and what it means."""
    a, b = res.modalities
    lo, hi = res.ci
    ddf = "inf" if math.isinf(res.ddf) else f"{res.ddf:.1f}"
    p = "< 0.001" if res.p < 0.001 else f"= {res.p:.3f}"
    if res.p < alpha:
        word = "higher" if res.difference > 0 else "lower"
        said = f"**{b.capitalize()} accuracy is {word} than {a}** (significant at the {alpha:.0%} level)."
    else:
        said = (f"**No significant difference** between {b} and {a} accuracy at the {alpha:.0%} level "
                f"(the interval includes 0).")
    return (f"{said} {b.capitalize()} minus {a}: {res.difference:+.3f} (95% CI {lo:+.3f} to {hi:+.3f}); "
            f"F(1, {ddf}) = {res.f:.2f}, t = {res.t:.2f}, p {p}. {res.n_readers} readers x {res.n_cases} cases, "
            f"readers and cases random; Obuchowski-Rockette with jackknife covariances and Hillis (2007) "
            f"denominator degrees of freedom; figure of merit: accuracy ({a} {res.means[0]:.3f}, "
            f"{b} {res.means[1]:.3f}).")
