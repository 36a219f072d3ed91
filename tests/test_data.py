"""Tests of hf_wlora.data: built-in generated sets, samplers, and loaders on small files written here."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest

from hf_wlora import data
from hf_wlora.data import (
    GlyphImages,
    MeshSDF,
    ProceduralShapes,
    ShapeInstance,
    image_grid_samples,
    load_hf_images,
    load_image_folder,
    load_mesh_folder,
    load_sdf_samples,
    mesh_surface_points,
    pixel_centers,
    random_pixel_samples,
    sample_sdf,
    save_sdf_samples,
    sdf_gradient,
    surface_points_from_sdf,
)
from hf_wlora.data.primitives import Box

# ---------------------------------------------------------------------------------------------------------------
# package surface
# ---------------------------------------------------------------------------------------------------------------


def test_public_names_resolve_and_import_is_light():
    assert sorted(data.__all__) == sorted(data._LAZY_ATTRIBUTES)
    for name in data.__all__:
        assert getattr(data, name) is not None
    code = (
        "import sys, hf_wlora.data as d; d.GlyphImages; d.load_mesh_folder; d.load_hf_images; "
        "print(sorted(m for m in ('torch', 'datasets', 'trimesh', 'PIL', 'peft') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------------------------------------------
# built-in glyph images
# ---------------------------------------------------------------------------------------------------------------


def test_glyphs_are_deterministic_per_seed_and_independent_of_size():
    a, b, other = GlyphImages(12, 24, seed=3), GlyphImages(12, 24, seed=3), GlyphImages(12, 24, seed=4)
    for i in range(12):
        np.testing.assert_array_equal(a[i].image, b[i].image)
        assert a[i].id == b[i].id and a[i].label == b[i].label
    assert any(not np.array_equal(a[i].image, other[i].image) for i in range(12))
    small, large = GlyphImages(4, 24, seed=3), GlyphImages(500, 24, seed=3)
    np.testing.assert_array_equal(small[3].image, large[3].image)
    assert small[3].label == large[3].label
    np.testing.assert_array_equal(large[-1].image, large[499].image)
    with pytest.raises(IndexError):
        small[4]


def test_glyph_labels_values_and_ids():
    glyphs = GlyphImages(100, 16, seed=0)
    labels = glyphs.labels
    assert labels.min() >= 0 and labels.max() < 10
    assert set(labels.tolist()) == set(range(10))
    assert glyphs.class_names == [str(d) for d in range(10)] and glyphs.num_classes == 10
    items = list(glyphs)
    assert [item.label for item in items] == labels.tolist()
    assert len({item.id for item in items}) == 100
    for item in items[:20]:
        assert item.image.shape == (16, 16, 3) and item.image.dtype == np.float32
        assert item.image.min() >= 0.0 and item.image.max() <= 1.0
    assert GlyphImages(3, 48)[0].image.shape == (48, 48, 3)


def test_glyphs_are_anti_aliased():
    for item in GlyphImages(10, 32, seed=0):
        image = item.image.astype(np.float64)
        colours = np.unique(image.reshape(-1, 3), axis=0)
        # Background, foreground, and partial-coverage blends along the stroke edges.
        assert len(colours) > 2
        background, foreground = image[0, 0], image.reshape(-1, 3)[np.argmax(np.abs(image - image[0, 0]).sum(-1))]
        direction = foreground - background
        coverage = ((image - background) @ direction) / (direction @ direction)
        edge = (coverage > 0.05) & (coverage < 0.95)
        assert edge.sum() >= 10


# ---------------------------------------------------------------------------------------------------------------
# built-in procedural shapes
# ---------------------------------------------------------------------------------------------------------------


def test_shapes_are_deterministic_per_seed_and_independent_of_size():
    points = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    a, b, other = ProceduralShapes(10, seed=1), ProceduralShapes(10, seed=1), ProceduralShapes(10, seed=2)
    for i in range(10):
        np.testing.assert_array_equal(a[i].sdf(points), b[i].sdf(points))
    assert any(not np.allclose(a[i].sdf(points), other[i].sdf(points)) for i in range(10))
    np.testing.assert_array_equal(
        ProceduralShapes(3, seed=1)[2].sdf(points), ProceduralShapes(300, seed=1)[2].sdf(points)
    )
    shapes = ProceduralShapes(100, seed=0)
    assert set(shapes.labels.tolist()) == set(range(10)) and len(shapes.class_names) == 10


def test_shape_sdf_sign_gradient_and_extent():
    rng = np.random.default_rng(0)
    shapes = ProceduralShapes(10, seed=0)
    assert sorted(shapes.labels.tolist()) == list(range(10))
    for shape in shapes:
        union = shape.sdf_fn
        # Known inside point: the centre of the first primitive (never a torus, whose centre is in its hole).
        inside = union.to_world(union.primitives[0].bounding_sphere()[0][None])
        assert shape.sdf(inside)[0] < 0, shape.id
        # Everything lies within radius 0.9, so points beyond it are outside, at least |p| - 0.9 away.
        directions = rng.normal(size=(200, 3))
        far = directions / np.linalg.norm(directions, axis=1, keepdims=True) * rng.uniform(0.95, 1.7, (200, 1))
        values = shape.sdf(far)
        assert (values > 0).all() and (values >= np.linalg.norm(far, axis=1) - 0.9 - 1e-6).all()
        # |grad| = 1 away from the surface (and from the few kinks of the union).
        points = rng.uniform(-1, 1, (2000, 3))
        points = points[np.abs(shape.sdf(points)) > 0.02]
        norms = np.linalg.norm(sdf_gradient(union, points, eps=1e-5), axis=1)
        assert np.mean(np.abs(norms - 1) < 1e-3) > 0.97, shape.id


def test_shape_sdf_is_exact_outside_and_surface_samples_are_on_the_surface():
    from scipy.spatial import cKDTree

    shape = ProceduralShapes(10, seed=0)[3]
    surface = shape.surface_points(20000, seed=0)
    assert surface.shape == (20000, 3) and surface.dtype == np.float32
    assert np.abs(shape.sdf(surface)).max() < 1e-4
    assert np.linalg.norm(surface, axis=1).max() <= 0.9 + 1e-4
    np.testing.assert_array_equal(surface, shape.surface_points(20000, seed=0))
    # Outside, the SDF equals the distance to the surface (up to the spacing of the surface samples).
    points = np.random.default_rng(1).uniform(-1, 1, (3000, 3))
    values = shape.sdf(points)
    points, values = points[values > 0.01], values[values > 0.01]
    nearest = cKDTree(surface).query(points)[0]
    assert (values <= nearest + 1e-5).all()
    assert np.abs(values - nearest).max() < 0.03


def test_shape_sdf_accepts_torch_tensors():
    import torch

    shape = ProceduralShapes(1, seed=0)[0]
    points = torch.rand(64, 3, dtype=torch.float64) * 2 - 1
    values = shape.sdf(points)
    assert isinstance(values, torch.Tensor) and values.dtype == torch.float64 and values.shape == (64,)
    np.testing.assert_allclose(values.numpy(), shape.sdf(points.numpy()), rtol=1e-6, atol=1e-7)


# ---------------------------------------------------------------------------------------------------------------
# samplers
# ---------------------------------------------------------------------------------------------------------------


def test_pixel_grid_matches_image_layout_and_grid_sample():
    import torch
    import torch.nn.functional as F

    coords = pixel_centers(3, 4)
    assert coords.shape == (12, 2) and coords.dtype == np.float32
    np.testing.assert_allclose(coords[0], [-0.75, -2 / 3], rtol=1e-6)  # top-left pixel centre
    np.testing.assert_allclose(coords[-1], [0.75, 2 / 3], rtol=1e-6)
    image = np.random.default_rng(0).random((5, 7, 3)).astype(np.float32)
    coords, values = image_grid_samples(image)
    np.testing.assert_array_equal(values, image.reshape(-1, 3))
    # The convention is grid_sample's (align_corners=False): sampling at the pixel centres returns the pixels.
    grid = torch.from_numpy(coords).view(1, 5, 7, 2)
    sampled = F.grid_sample(torch.from_numpy(image).permute(2, 0, 1)[None], grid, align_corners=False)
    np.testing.assert_allclose(sampled[0].permute(1, 2, 0).numpy(), image, atol=1e-6)


def test_random_pixel_samples_are_seeded_and_consistent():
    image = GlyphImages(1, 16)[0].image
    coords, values = random_pixel_samples(image, 50, seed=7)
    again, _ = random_pixel_samples(image, 50, seed=7)
    np.testing.assert_array_equal(coords, again)
    assert len(np.unique(coords, axis=0)) == 50
    cols = np.round((coords[:, 0] + 1) * 16 / 2 - 0.5).astype(int)
    rows = np.round((coords[:, 1] + 1) * 16 / 2 - 0.5).astype(int)
    np.testing.assert_array_equal(values, image[rows, cols])
    with pytest.raises(ValueError, match="replace=True"):
        random_pixel_samples(image, 257, seed=0)


def test_sample_sdf_is_seeded_and_mixes_uniform_and_near_surface_points():
    shape = ProceduralShapes(1, seed=0)[0]
    points, values = sample_sdf(shape, 1000, seed=0, uniform_fraction=0.25)
    assert points.shape == (1000, 3) and values.shape == (1000,) and points.dtype == values.dtype == np.float32
    np.testing.assert_array_equal(points, shape.sample(1000, seed=0, uniform_fraction=0.25)[0])
    assert not np.array_equal(points, sample_sdf(shape, 1000, seed=1)[0])
    np.testing.assert_allclose(values, shape.sdf(points), atol=1e-6)
    assert np.abs(points).max() <= 1.0
    # Most near-surface points are within a few noise scales of the surface; uniform points mostly are not.
    assert np.mean(np.abs(values[250:]) < 0.1) > 0.9
    assert np.mean(np.abs(values[:250]) < 0.1) < 0.6


def test_surface_points_from_sdf_are_area_uniform():
    box = Box((0, 0, 0), (0.5, 0.3, 0.4))
    points = surface_points_from_sdf(box, 20000, seed=0)
    assert np.abs(box(points)).max() < 1e-5
    face_axis = np.argmax(np.abs(points) / np.array([0.5, 0.3, 0.4]), axis=1)
    areas = np.array([0.6 * 0.8, 1.0 * 0.8, 1.0 * 0.6])
    np.testing.assert_allclose(np.bincount(face_axis) / len(points), areas / areas.sum(), atol=0.015)


def test_mesh_surface_points_lie_on_the_mesh():
    import trimesh

    box = trimesh.creation.box(extents=(1.0, 0.6, 0.8))
    points = mesh_surface_points(box.vertices, box.faces, 500, seed=0)
    np.testing.assert_array_equal(points, mesh_surface_points(box.vertices, box.faces, 500, seed=0))
    assert np.abs(Box((0, 0, 0), (0.5, 0.3, 0.4))(points)).max() < 1e-6


# ---------------------------------------------------------------------------------------------------------------
# image loaders
# ---------------------------------------------------------------------------------------------------------------


def _save_png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _image(height, width, seed):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3))


def test_image_folder_classes_resize_and_centre_crop(tmp_path):
    _save_png(tmp_path / "dogs" / "a.png", _image(12, 12, 0))
    _save_png(tmp_path / "cats" / "b.png", _image(12, 12, 1))
    wide = np.zeros((10, 30, 3), dtype=np.uint8)
    wide[:, :10] = (255, 0, 0)
    wide[:, 10:20] = (0, 0, 255)
    wide[:, 20:] = (255, 0, 0)
    _save_png(tmp_path / "cats" / "nested" / "wide.png", wide)

    images = load_image_folder(tmp_path, resolution=8)
    assert images.class_names == ["cats", "dogs"]
    assert [item.id for item in images] == ["cats/b.png", "cats/nested/wide.png", "dogs/a.png"]
    assert images.labels.tolist() == [0, 0, 1] and images.skipped == []
    for item in images:
        assert item.image.shape == (8, 8, 3) and item.image.dtype == np.float32
        assert item.image.min() >= 0 and item.image.max() <= 1
    # Centre crop keeps the blue middle square of the wide image, and only it.
    np.testing.assert_allclose(images[1].image, np.broadcast_to([0.0, 0.0, 1.0], (8, 8, 3)), atol=1 / 255)

    same = load_image_folder(tmp_path / "dogs")
    assert same.class_names == ["dogs"] and same[0].image.shape == (12, 12, 3)
    np.testing.assert_allclose(same[0].image * 255, _image(12, 12, 0), atol=1e-4)


def test_image_folder_bad_items_raise_or_are_skipped_and_reported(tmp_path, caplog):
    _save_png(tmp_path / "a" / "1.png", _image(8, 8, 0))
    _save_png(tmp_path / "a" / "2.png", _image(8, 8, 1))
    _save_png(tmp_path / "b" / "3.png", _image(8, 8, 2))
    _save_png(tmp_path / "b" / "odd_size.png", _image(10, 6, 3))
    (tmp_path / "b" / "broken.png").write_bytes(b"this is not a png")

    with pytest.raises(ValueError, match=r"broken\.png.*cannot be decoded"):
        load_image_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_wlora.data"):
        images = load_image_folder(tmp_path, on_error="skip")
    assert len(images) == 3 and {item.id for item in images} == {"a/1.png", "a/2.png", "b/3.png"}
    skipped = dict(images.skipped)
    assert set(skipped) == {str(tmp_path / "b" / "broken.png"), str(tmp_path / "b" / "odd_size.png")}
    assert "6x10" in skipped[str(tmp_path / "b" / "odd_size.png")]
    assert "broken.png" in caplog.text and "odd_size.png" in caplog.text

    # Mixed sizes alone raise a clear error that suggests resolution=...; resizing accepts them.
    (tmp_path / "b" / "broken.png").unlink()
    with pytest.raises(ValueError, match=r"odd_size\.png.*6x10.*resolution="):
        load_image_folder(tmp_path)
    assert len(load_image_folder(tmp_path, resolution=8)) == 4

    _save_png(tmp_path / "stray.png", _image(8, 8, 4))
    with pytest.raises(ValueError, match=r"stray\.png.*class"):
        load_image_folder(tmp_path, resolution=8)


def test_hf_image_dataset_from_save_to_disk_and_parquet(tmp_path):
    import datasets
    from PIL import Image

    pictures = [Image.fromarray(_image(10, 14, i).astype(np.uint8)) for i in range(4)]
    features = datasets.Features({"img": datasets.Image(), "kind": datasets.ClassLabel(names=["x", "y", "z"])})
    dataset = datasets.Dataset.from_dict({"img": pictures, "kind": [2, 0, 2, 1]}, features=features)
    dataset.save_to_disk(str(tmp_path / "saved"))

    images = load_hf_images(str(tmp_path / "saved"), image_column="img", label_column="kind")
    assert len(images) == 4 and images.class_names == ["x", "y", "z"]
    assert images.labels.tolist() == [2, 0, 2, 1] and images[0].id == "train/0"
    np.testing.assert_allclose(images[3].image * 255, _image(10, 14, 3), atol=1e-4)
    assert load_hf_images(str(tmp_path / "saved"), image_column="img", label_column=None, resolution=6)[
        0
    ].image.shape == (
        6,
        6,
        3,
    )
    with pytest.raises(ValueError, match="no column 'image'"):
        load_hf_images(str(tmp_path / "saved"))

    # The layout push_to_hub writes, read as a local folder.
    (tmp_path / "hub" / "data").mkdir(parents=True)
    dataset.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))
    from_parquet = load_hf_images(str(tmp_path / "hub"), image_column="img", label_column="kind", resolution=8)
    assert len(from_parquet) == 4 and from_parquet.class_names == ["x", "y", "z"]
    assert from_parquet[0].image.shape == (8, 8, 3)


def test_hf_image_dataset_bad_rows(tmp_path, caplog):
    import datasets

    good = np.full((4, 4, 3), 0.5, dtype=np.float32)
    bad = good.copy()
    bad[1, 2, 0] = np.nan
    dataset = datasets.Dataset.from_dict({"image": [good, bad, good], "label": ["b", "a", "b"]})
    dataset.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match=r"row 1.*NaN"):
        load_hf_images(str(tmp_path / "ds"))
    with caplog.at_level(logging.WARNING, logger="hf_wlora.data"):
        images = load_hf_images(str(tmp_path / "ds"), on_error="skip")
    assert len(images) == 2 and images.class_names == ["a", "b"] and images.labels.tolist() == [1, 1]
    assert len(images.skipped) == 1 and "row 1" in images.skipped[0][0] and "row 1" in caplog.text
    np.testing.assert_allclose(images[0].image, good)
    resized = load_hf_images(str(tmp_path / "ds"), on_error="skip", resolution=2)
    assert resized[0].image.shape == (2, 2, 3) and resized[0].image.dtype == np.float32
    np.testing.assert_allclose(resized[0].image, 0.5, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# mesh loaders
# ---------------------------------------------------------------------------------------------------------------

_EXTENTS = np.array([1.0, 0.6, 0.8])


def _normalised_box_sdf(points):
    # The loader centres the box and scales its farthest vertex (half the diagonal) to radius 0.9.
    scale = 0.9 / np.linalg.norm(_EXTENTS / 2)
    return Box((0, 0, 0), tuple(_EXTENTS / 2 * scale))(points)


def test_mesh_folder_formats_and_exact_sdf(tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=_EXTENTS)
    box.apply_translation([0.3, -0.2, 0.1])  # normalisation must undo this
    for ext in ("obj", "ply", "off", "glb"):
        folder = tmp_path / ("boxes" if ext != "glb" else "scenes")
        folder.mkdir(exist_ok=True)
        box.export(str(folder / f"box.{ext}"))

    shapes = load_mesh_folder(tmp_path)
    assert shapes.class_names == ["boxes", "scenes"] and len(shapes) == 4 and shapes.skipped == []
    assert [s.id for s in shapes] == ["boxes/box.obj", "boxes/box.off", "boxes/box.ply", "scenes/box.glb"]
    points = np.random.default_rng(0).uniform(-1, 1, (2000, 3))
    expected = _normalised_box_sdf(points)
    for shape in shapes:
        assert isinstance(shape, ShapeInstance) and shape.has_sdf and shape.mesh is not None
        np.testing.assert_allclose(shape.sdf(points), expected, atol=1e-5)
        surface = shape.surface_points(300, seed=0)
        assert np.abs(_normalised_box_sdf(surface)).max() < 1e-5
        samples, values = shape.sample(400, seed=0)
        np.testing.assert_allclose(values, _normalised_box_sdf(samples), atol=1e-5)


def test_non_watertight_mesh_gets_correct_signs(tmp_path):
    import trimesh

    box = trimesh.creation.box(extents=_EXTENTS)
    # Remove the two triangles of the largest face (+z or -z side), leaving a big hole.
    normals = box.face_normals
    keep = ~np.isclose(np.abs(normals[:, 2]), 1.0) | (normals[:, 2] < 0)
    open_box = trimesh.Trimesh(box.vertices, box.faces[keep], process=False)
    assert not open_box.is_watertight and len(open_box.faces) == 10
    open_box.export(str(tmp_path / "open.obj"))

    shape = load_mesh_folder(tmp_path)[0]
    points = np.random.default_rng(0).uniform(-1, 1, (4000, 3))
    truth = _normalised_box_sdf(points)
    well = np.abs(truth) > 0.15
    assert well.sum() > 1000 and (truth[well] < 0).sum() > 50
    np.testing.assert_array_equal(np.sign(shape.sdf(points[well])), np.sign(truth[well]))
    # The winding number is ~1 inside, ~0 far outside despite the hole.
    winding = MeshSDF(open_box.vertices, open_box.faces).winding_number(np.array([[0, 0, 0], [3, 3, 3]]))
    assert 0.6 < winding[0] < 1.0 and abs(winding[1]) < 0.05


def test_mesh_folder_bad_items(tmp_path, caplog):
    import trimesh

    trimesh.creation.box().export(str(tmp_path / "good.obj"))
    (tmp_path / "empty.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (tmp_path / "garbage.ply").write_bytes(b"\x00\x01 not a mesh")
    with pytest.raises(ValueError, match=r"empty\.obj.*no faces"):
        load_mesh_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_wlora.data"):
        shapes = load_mesh_folder(tmp_path, on_error="skip")
    assert [s.id for s in shapes] == ["good.obj"]
    assert {path for path, _ in shapes.skipped} == {str(tmp_path / "empty.obj"), str(tmp_path / "garbage.ply")}
    assert "empty.obj" in caplog.text and "garbage.ply" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# SDF sample files
# ---------------------------------------------------------------------------------------------------------------


def test_sdf_sample_files(tmp_path):
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (300, 3)).astype(np.float32)
    sdf = (np.linalg.norm(points, axis=1) - 0.5).astype(np.float32)
    (tmp_path / "spheres").mkdir()
    (tmp_path / "deepsdf").mkdir()
    save_sdf_samples(tmp_path / "spheres" / "a.npz", points, sdf)
    np.save(tmp_path / "spheres" / "b.npy", np.concatenate([points, sdf[:, None]], axis=1))
    rows = np.concatenate([points, sdf[:, None]], axis=1)
    np.savez(tmp_path / "deepsdf" / "c.npz", pos=rows[sdf >= 0], neg=rows[sdf < 0])

    shapes = load_sdf_samples(tmp_path)
    assert shapes.class_names == ["deepsdf", "spheres"] and shapes.labels.tolist() == [0, 1, 1]
    assert [s.id for s in shapes] == ["deepsdf/c.npz", "spheres/a.npz", "spheres/b.npy"]
    for shape in shapes:
        assert not shape.has_sdf and shape.points.shape == (300, 3) and shape.values.shape == (300,)
        np.testing.assert_allclose(shape.values, np.linalg.norm(shape.points, axis=1) - 0.5, atol=1e-6)
        sub_points, sub_values = shape.sample(100, seed=0)
        np.testing.assert_array_equal(sub_points, shape.sample(100, seed=0)[0])
        np.testing.assert_allclose(sub_values, np.linalg.norm(sub_points, axis=1) - 0.5, atol=1e-6)
        assert len(np.unique(sub_points, axis=0)) == 100
        near = shape.surface_points(10)
        assert np.abs(np.linalg.norm(near, axis=1) - 0.5).max() < 0.1
        # the stored points nearest the surface, in seeded random order: a prefix (the 3-D study's EMD subset) is
        # a random subset of them, not the nearest ones
        nearest = shape.points[np.argsort(np.abs(shape.values), kind="stable")[:50]]
        drawn = shape.surface_points(50, seed=3)
        assert sorted(map(tuple, drawn)) == sorted(map(tuple, nearest)) and not np.array_equal(drawn, nearest)
        np.testing.assert_array_equal(drawn, shape.surface_points(50, seed=3))
        with pytest.raises(ValueError, match="stored SDF samples"):
            shape.sdf(points)


def test_sdf_sample_file_round_trip_from_a_shape(tmp_path):
    shape = ProceduralShapes(1, seed=0)[0]
    points, values = shape.sample(500, seed=0)
    save_sdf_samples(tmp_path / "shape.npz", points, values)
    loaded = load_sdf_samples(tmp_path)[0]
    np.testing.assert_array_equal(loaded.points, points)
    np.testing.assert_array_equal(loaded.values, values)


def test_sdf_sample_files_bad_items(tmp_path, caplog):
    rows = np.random.default_rng(0).uniform(-1, 1, (50, 4))
    np.save(tmp_path / "good.npy", rows)
    with_nan = rows.copy()
    with_nan[7, 3] = np.nan
    np.savez(tmp_path / "nan.npz", points=with_nan[:, :3], sdf=with_nan[:, 3])
    np.savez(tmp_path / "keys.npz", xyz=rows)
    (tmp_path / "corrupt.npy").write_bytes(b"nope")

    with pytest.raises(ValueError, match=r"corrupt\.npy"):
        load_sdf_samples(tmp_path)
    (tmp_path / "corrupt.npy").unlink()
    with pytest.raises(ValueError, match=r"keys\.npz.*'points' and 'sdf'"):
        load_sdf_samples(tmp_path)
    (tmp_path / "keys.npz").unlink()
    with pytest.raises(ValueError, match=r"nan\.npz: 1 of 50 rows contain NaN"):
        load_sdf_samples(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_wlora.data"):
        shapes = load_sdf_samples(tmp_path, on_error="skip")
    assert [s.id for s in shapes] == ["good.npy"] and shapes.skipped[0][0] == str(tmp_path / "nan.npz")
    assert "nan.npz" in caplog.text
    dropped = load_sdf_samples(tmp_path, drop_nan_rows=True)
    assert [len(s.values) for s in dropped] == [50, 49] and dropped.skipped == []
