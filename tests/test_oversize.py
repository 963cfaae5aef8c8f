"""Images far larger than their dataset's usual crops are named before the run embeds them."""

from types import SimpleNamespace

from raybench.pipeline.oversize import FACTOR, FLOOR, oversize, oversize_warnings


def _files(tmp_path, sizes):
    paths = []
    for i, size in enumerate(sizes):
        path = tmp_path / f"{i:04d}_c1s1_000001_01.jpg"
        path.write_bytes(bytes(size))
        paths.append(str(path))
    return paths


def test_a_frame_among_crops_is_named_with_its_size(tmp_path):
    paths = _files(tmp_path, [5000] * 20 + [3_000_000, 80_000])  # a 3 MB frame; 80 kB is 16x, under 1 MiB
    big, median = oversize(paths)
    assert median == 5000
    assert big == [(paths[20], 3_000_000)]
    data = SimpleNamespace(name="market1501", paths=tuple(paths))
    assert oversize_warnings([data]) == [
        f"warning: market1501: 1 image(s) far larger than its usual crops (over {FACTOR}x its median "
        f"file of 5.0 kB): {paths[20]} (3.0 MB)"]


def test_a_dataset_of_large_images_warns_about_none(tmp_path):
    """High-resolution datasets: nothing stands out from its own median."""
    paths = _files(tmp_path, [2 * FLOOR] * 5 + [4 * FLOOR])
    assert oversize(paths)[0] == []
    assert oversize_warnings([SimpleNamespace(name="big", paths=tuple(paths))]) == []


def test_missing_files_and_uris_are_left_to_the_decoder(tmp_path):
    paths = _files(tmp_path, [5000] * 3) + [str(tmp_path / "gone.jpg")]
    assert oversize(paths) == ([], 5000)
    assert oversize(["s3://bucket/a.jpg"]) == ([], 0)
