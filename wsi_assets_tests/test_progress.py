"""Progress lines of long loops (a slide's tiles, a batch's images): every 10% and at the end, with rate and ETA."""

from wsi_assets.core.progress import Progress, ProgressReporter


def test_reporter_logs_every_tenth_and_the_end_only():
    lines: list[str] = []
    report = ProgressReporter(lines.append, stage="batch segmentation")
    for done in range(1, 38):
        report(Progress(done, 37, cells=done * 300, elapsed_s=done * 0.5, unit="images"))
    assert len(lines) == 10, lines  # 10%, 20%, ... 100%; never twice for one step
    assert lines[-1] == "batch segmentation 100%: 37/37 images, 11100 nuclei, 2.00 images/s, ETA 0 s"
    assert lines[0].startswith("batch segmentation 11%: 4/37 images")  # the first image count past 10%
    assert "ETA 16 s" in lines[0]  # 33 images left at 2 images/s


def test_a_jump_past_several_steps_logs_once_and_no_rate_yet_shows_no_eta():
    lines: list[str] = []
    report = ProgressReporter(lines.append)
    report(Progress(0, 10, cells=0, elapsed_s=0.0))
    report(Progress(7, 10, cells=70, elapsed_s=7.0))
    report(Progress(8, 10, cells=80, elapsed_s=8.0))
    assert lines == [
        "segmentation 70%: 7/10 tiles, 70 nuclei, 1.00 tiles/s, ETA 3 s",
        "segmentation 80%: 8/10 tiles, 80 nuclei, 1.00 tiles/s, ETA 2 s",
    ]
    assert Progress(0, 10, 0, 0.0).line("x").endswith("ETA -")


def test_a_timed_reporter_speaks_at_the_first_item_then_every_interval_and_at_the_end():
    from wsi_assets.core.progress import EverySeconds

    now = [0.0]
    lines: list[str] = []
    report = EverySeconds(lines.append, "scoring before:", "slide tiles", every_s=30, clock=lambda: now[0])
    for done in range(1, 11):
        now[0] = done * 8.0  # 8 s a tile
        report(done, 10)
    # At once (so a slow phase is visible within its first minute), at 32 s and 64 s after that line... and at the end.
    assert [line.split(" slide tiles")[0] for line in lines] == [
        "scoring before: 1/10",
        "scoring before: 5/10",
        "scoring before: 9/10",
        "scoring before: 10/10",
    ]
    assert lines[0] == "scoring before: 1/10 slide tiles, 0.12 slide tiles/s, ETA 72 s"
    report(10, 10, "loss 0.5")
    assert lines[-1].endswith("ETA 0 s; loss 0.5")
