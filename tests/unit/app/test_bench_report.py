from app.tools.bench import Measurement, report


def run(name: str, seconds: float, warm_rate: float | None, segment_count: int | None = None) -> Measurement:
    return Measurement(name, 200_000, seconds, 50.0, 80.0, warm_rate, segment_count)


def test_the_segment_cost_is_over_every_run_of_each_and_pairs_runs_in_order() -> None:
    results = [
        run("as shipped", 8.0, 25_000),
        run("0, run 1", 8.0, 20_000, 0),
        run("50, run 1", 10.0, 16_000, 50),
        run("50, run 2", 8.0, 15_000, 50),
        run("0, run 2", 8.0, 20_000, 0),
        run("naive", 80.0, None),
    ]

    summary = report(results).splitlines()[-1]

    # First sight: 400,000 events in 18 s against 16 s; known users: mean rates 15,500 / 20,000.
    assert summary.startswith("50 segments keep 89% of the throughput without segments on first sight")
    assert "78% once users are known" in summary
    assert "over 2 runs of each; run by run, first sight 80%, 100%, known 80%, 75%" in summary


def test_model_state_sizes_measure_the_stored_encoding() -> None:
    from app.tools.model_quality import model_state_sizes

    sizes = model_state_sizes(users=40, events=600, seed=3)
    assert sizes.users > 0
    assert 0 < sizes.mean_bytes <= sizes.p99_bytes <= sizes.max_bytes
