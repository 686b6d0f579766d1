"""The computed batch plan: one row per batch, with a readable summary and a picture."""
from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .options import BatchOptions


@dataclass
class BatchPlan:
    """The batches a call would cut, computed: what ``df.cumbatch.plan(...)`` returns.

    ``batches`` has one row per batch: ``batch`` (id), ``rows``, ``total`` (sum of weights),
    ``max`` (heaviest row), ``start``/``stop`` (global row positions of its first row and one
    past its last, counting every input row, skipped ones too).

    >>> import pandas as pd, dask_cumbatch
    >>> plan = pd.DataFrame({"w": [3, 3, 3, 3]}).cumbatch.plan("w", 6)
    >>> plan.n_batches, plan.batches["rows"].tolist()
    (2, [2, 2])
    """

    batches: pd.DataFrame
    options: BatchOptions
    skipped: int = 0
    partitions: int = 1

    @property
    def n_batches(self) -> int:
        """Number of batches.

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [5, 5, 5]}).cumbatch.plan("w", 10).n_batches
        2
        """
        return len(self.batches)

    @property
    def n_rows(self) -> int:
        """Rows placed in batches (skipped rows excluded).

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1.0, float("nan"), 2.0]}).cumbatch.plan("w", 10, invalid="skip").n_rows
        2
        """
        return int(self.batches["rows"].sum())

    @property
    def limit(self):
        """The limit the plan was cut with.

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1]}).cumbatch.plan("w", "1KiB").limit
        1024
        """
        return self.options.limit

    @property
    def padding_ratio(self) -> float:
        """Padding per unit of real weight: ``sum(max * rows) / sum(total) - 1`` over all batches.

        The padded cost of the batches (each batch's heaviest row times its row count, what a
        batch of padded sequences costs) divided by their real weight, minus one: 0 when every
        row of a batch weighs the same, 0.5 when padding adds half as much again as the real
        tokens, and above 1 when there is more padding than real weight. (As a share of the
        padded total, padding is ``padding_ratio / (1 + padding_ratio)``.) 0 for no weight.

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [1, 3]}).cumbatch.plan("w", 8, cost="padded").padding_ratio
        0.5
        """
        real = float(self.batches["total"].sum())
        padded = float((self.batches["max"] * self.batches["rows"]).sum())
        return padded / real - 1.0 if real > 0 else 0.0

    @property
    def padding_fraction(self) -> float:
        """Deprecated name of :attr:`padding_ratio` (it is not a fraction: it can exceed 1).

        >>> import warnings, pandas as pd, dask_cumbatch
        >>> plan = pd.DataFrame({"w": [1, 3]}).cumbatch.plan("w", 8, cost="padded")
        >>> with warnings.catch_warnings(record=True):
        ...     plan.padding_fraction
        0.5
        """
        import warnings

        warnings.warn("BatchPlan.padding_fraction is renamed padding_ratio (padded cost / real cost - 1)",
                      FutureWarning, stacklevel=2)
        return self.padding_ratio

    def summary(self) -> pd.Series:
        """Headline numbers: batches, rows, skipped, and the spread of batch totals and sizes.

        >>> import pandas as pd, dask_cumbatch
        >>> pd.DataFrame({"w": [3, 3, 3]}).cumbatch.plan("w", 6).summary()["batches"]
        2
        """
        b = self.batches
        out = {
            "batches": self.n_batches,
            "rows": self.n_rows,
            "skipped": self.skipped,
            "limit": self.limit,
            "mode": self.options.mode,
        }
        if len(b):
            tot = b["total"]
            out.update({
                "total min": _scalar(tot.min()), "total median": exact_median(tot), "total max": _scalar(tot.max()),
                "fill (mean total / limit)": tot.astype(float).mean() / float(self.limit),
                "rows min": int(b["rows"].min()), "rows median": exact_median(b["rows"]),
                "rows max": int(b["rows"].max()),
            })
            if self.options.cost == "padded":
                out["padding ratio"] = self.padding_ratio
        return pd.Series(out, name="plan", dtype=object)

    def __repr__(self) -> str:
        o = self.options
        lines = [f"BatchPlan: {self.n_batches:,} batches, {self.n_rows:,} rows"
                 + (f", {self.skipped:,} skipped" if self.skipped else "")
                 + f" (mode={o.mode!r}, limit={o.limit!r}, cost={o.cost!r})"]
        if len(self.batches):
            tot = self.batches["total"]
            rows = self.batches["rows"]
            lines.append(f"  batch totals: min {_num(_scalar(tot.min()))}  median {_num(exact_median(tot))}  "
                         f"max {_num(_scalar(tot.max()))}")
            lines.append(f"  batch rows:   min {rows.min():,}  median {_num(exact_median(rows))}  max {rows.max():,}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        head = html.escape(repr(self).splitlines()[0])
        table = self.summary().to_frame().to_html()
        picture = ""
        try:
            picture = self._svg()
        except ImportError:
            pass
        return f"<div><p><b>{head}</b></p>{table}{picture}</div>"

    def plot(self, ax=None, bins: int = 50):
        """Histogram of batch totals with the limit marked (needs matplotlib).

        >>> import pandas as pd, dask_cumbatch
        >>> ax = pd.DataFrame({"w": range(100)}).cumbatch.plan("w", 500).plot()  # doctest: +SKIP
        """
        try:
            import matplotlib.pyplot as plt
            from matplotlib.ticker import MaxNLocator
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("BatchPlan.plot needs matplotlib: pip install 'dask-cumbatch[plot]'") from err
        if ax is None:  # constrained: the axis labels stay inside the figure, however it is saved
            _, ax = plt.subplots(figsize=(6, 3.2), layout="constrained")
        totals = self.batches["total"].astype(float).to_numpy()
        ax.hist(totals, bins=bins, color="#4c72b0")
        ax.axvline(float(self.limit), color="#c44e52", linestyle="--", label=f"limit {self.limit:,}")
        ax.set_xlabel("batch total")
        ax.set_ylabel("batches")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts of batches: no 2.5
        ax.set_title(f"{self.n_batches:,} batches, mode={self.options.mode!r}")
        ax.legend(loc="upper left")
        return ax

    def _svg(self) -> str:
        import io

        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 2.5))
        self.plot(ax=ax)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()


def _scalar(x):
    """A NumPy scalar as the Python number it holds (an int64 stays an exact int).

    >>> _scalar(np.int64(2**62 + 1)), _scalar(np.float64(0.5))
    (4611686018427387905, 0.5)
    """
    return x.item() if isinstance(x, np.generic) else x


def exact_median(values: pd.Series):
    """The median, exact for integers (an int, or a float only when it falls between two ints);
    pandas' median goes through float64 and rounds totals above 2**53.

    >>> exact_median(pd.Series([2**62 + 1, 2**62 + 3, 7])), exact_median(pd.Series([3, 4]))
    (4611686018427387905, 3.5)
    >>> exact_median(pd.Series([0.5, 0.25]))
    0.375
    """
    if not pd.api.types.is_integer_dtype(values.dtype):
        return _scalar(values.median())
    ordered = np.sort(values.to_numpy())
    n = len(ordered)
    if n % 2:
        return int(ordered[n // 2])
    twice = int(ordered[n // 2 - 1]) + int(ordered[n // 2])  # Python ints: no overflow
    return twice // 2 if twice % 2 == 0 else twice / 2


def _num(x) -> str:
    """A readable number: thousands separators, no exponent below 1e15 (ints: never).

    >>> _num(1810200.0), _num(12.3456789), _num(0.000123), _num(4620693217682128901)
    ('1,810,200', '12.3457', '0.000123', '4,620,693,217,682,128,901')
    """
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if x == int(x) and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 1000:
        return f"{x:,.1f}"
    return f"{x:.6g}"


def empty_batches() -> pd.DataFrame:
    return pd.DataFrame({c: np.array([], dtype=np.int64) for c in ("batch", "rows", "total", "max", "start", "stop")})
