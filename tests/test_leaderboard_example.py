"""The leaderboard example's tour, through a real daemon: three components in one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import ComponentError
from runtime.testing import start_daemon

APP = Path(__file__).parents[1] / "examples" / "leaderboard" / "app.py"


def test_the_leaderboard_tour(tmp_path: Path) -> None:
    with start_daemon(tmp_path / "data", app=APP) as d, d.client() as c:
        ranks = [c.mutation("submit", player=p, score=s)["rank"]
                 for p, s in [("ann", 50), ("bob", 70), ("cy", 60), ("ann", 90)]]
        assert ranks == [1, 1, 2, 1]
        assert c.query("top", n=3) == [{"rank": 1, "player": "ann", "score": 90},
                                       {"rank": 2, "player": "bob", "score": 70},
                                       {"rank": 3, "player": "cy", "score": 60}]
        assert c.query("percentile", score=65) == 50.0
        assert c.query("percentile", score=50) == 0.0
        assert c.query("stats") == {"plays": 4, "scores": 4, "mean": 67.5}
        c.mutation("submit", player="ann", score=1)  # ann's third this minute
        with pytest.raises(ComponentError) as err:
            c.mutation("submit", player="ann", score=2)
        assert err.value.data["kind"] == "RateLimited" and err.value.data["name"] == "submit"
        assert err.value.data["retry_after"] > 0
        assert c.query("stats") == {"plays": 5, "scores": 5, "mean": 54.2}  # the refused one left no trace
        with d.client(admin=True) as admin:
            mounts = {t["mount"] for t in admin.admin("data")}
        assert mounts == {"", "limits", "plays", "ranks"}  # each component's tables live in its own mount
