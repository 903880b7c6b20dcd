import numpy as np

from bowlrp.datasets.polygons import (
    crop_label,
    generate,
    load_scene,
    save_scenes,
    tile_dataset,
    training_crops,
)


def test_labels_agree_with_masks():
    scenes = generate(3, 3)
    for scene in scenes:
        ids = np.unique(scene.mask)
        assert set(ids[ids > 0]) == {s["id"] for s in scene.shapes}
        for s in scene.shapes:
            rows, cols = np.nonzero(scene.mask == s["id"])
            np.testing.assert_allclose(s["centroid"], [rows.mean(), cols.mean()])
        crops, labels, origins = training_crops(scene)
        for (r, c), y in zip(origins, labels):
            window = scene.mask[r : r + 102, c : c + 102]
            inside = [
                s
                for s in scene.shapes
                if s["kind"] == "polygon"
                and r <= s["centroid"][0] < r + 102
                and c <= s["centroid"][1] < c + 102
            ]
            assert y == int(bool(inside))
            if y:  # a polygon whose centre of mass is inside has pixels inside
                assert np.isin(window, [s["id"] for s in inside]).any()


def test_shapes_do_not_overlap_and_vary():
    scene = generate(4, 1)[0]
    kinds = {s["kind"] for s in scene.shapes}
    assert kinds == {"polygon", "round"}
    vertices = {s["vertices"] for s in scene.shapes if s["kind"] == "polygon"}
    assert vertices <= {4, 5, 6, 7} and len(vertices) >= 2
    for a in scene.shapes:
        for b in scene.shapes:
            if a["id"] < b["id"]:
                d = np.hypot(*(np.array(a["center"]) - b["center"]))
                assert d >= a["radius"] + b["radius"]
    assert 0.0 <= scene.image.min() and scene.image.max() <= 1.0


def test_generation_is_seeded_and_files_round_trip(tmp_path):
    a, b = generate(5, 2), generate(5, 2)
    np.testing.assert_array_equal(a[1].image, b[1].image)
    paths = save_scenes(a, tmp_path, "s")
    back = load_scene(paths[0])
    np.testing.assert_array_equal(back.mask, a[0].mask)
    assert back.shapes == a[0].shapes
    assert crop_label(back, 0, 0) == crop_label(a[0], 0, 0)
    crops, y = tile_dataset(a)
    assert len(crops) == 50 and set(np.unique(y)) <= {0, 1}


def test_overlapping_tiles_follow_the_thesis_test_protocol():
    from bowlrp.datasets.polygons import overlapping_tiles

    scenes = generate(4, 2)
    crops, labels, owner = overlapping_tiles(scenes)
    assert len(crops) == 2 * 13 * 13  # (510 - 102) / 34 + 1 = 13 per axis
    assert np.array_equal(np.bincount(owner), [169, 169])
    k = 0
    for scene in scenes:
        for r in range(0, 409, 34):
            for c in range(0, 409, 34):
                assert labels[k] == crop_label(scene, r, c)
                np.testing.assert_array_equal(crops[k], scene.image[r : r + 102, c : c + 102])
                k += 1
