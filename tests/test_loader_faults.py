"""Loaders refuse data they would otherwise change silently (issue 14, item 4): each fault names the file, and
`on_error="skip"` skips and reports it like any other bad file."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from hf_wlora.data import load_hf_images, load_image_folder, load_mesh_folder, load_sdf_samples, save_sdf_samples
from hf_wlora.data.images import to_image_array

_GRADIENT = np.tile(np.linspace(0.0, 1.0, 16), (12, 1))  # (12, 16) grey ramp from black to white


def _write_gradients(folder):
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(_GRADIENT * 65535).astype(np.uint16)).save(folder / "deep.png")
    Image.fromarray(np.round(_GRADIENT * 255).astype(np.uint8)).save(folder / "plain.png")
    assert Image.open(folder / "deep.png").mode.startswith("I")  # what Pillow makes of a 16-bit PNG


# ---------------------------------------------------------------------------------------------------------------
# 16-bit images
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", [None, 8])
def test_16_bit_png_loads_like_the_same_picture_at_8_bits(tmp_path, resolution):
    _write_gradients(tmp_path)
    images = load_image_folder(tmp_path, resolution=resolution)
    assert images.ids == ["deep.png", "plain.png"]
    deep, plain = images[0].image, images[1].image
    assert deep.shape == plain.shape and deep.dtype == np.float32
    assert np.abs(deep - plain).max() <= 1 / 255
    if resolution is None:
        np.testing.assert_allclose(deep[..., 0], _GRADIENT, atol=1e-6)


def test_16_bit_png_in_an_hf_image_dataset(tmp_path):
    import datasets

    _write_gradients(tmp_path / "files")
    paths = [str(tmp_path / "files" / name) for name in ("deep.png", "plain.png")]
    dataset = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
    dataset.save_to_disk(str(tmp_path / "ds"))
    images = load_hf_images(str(tmp_path / "ds"), label_column=None)
    assert np.abs(images[0].image - images[1].image).max() <= 1 / 255


def test_32_bit_integer_image_is_read_as_16_bit_or_refused():
    ramp = np.round(_GRADIENT * 65535).astype(np.int32)
    np.testing.assert_allclose(to_image_array(Image.fromarray(ramp))[..., 0], _GRADIENT, atol=1e-6)
    with pytest.raises(ValueError, match=r"70000.*16-bit"):
        to_image_array(Image.fromarray(np.full((4, 4), 70_000, dtype=np.int32)))


# ---------------------------------------------------------------------------------------------------------------
# meshes
# ---------------------------------------------------------------------------------------------------------------

_TETRAHEDRON = "v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 3 2\nf 1 2 4\nf 1 4 3\nf 2 3 4\n"


def test_obj_with_a_nan_vertex_is_refused_not_cut_down(tmp_path, caplog):
    (tmp_path / "good.obj").write_text(_TETRAHEDRON)
    # trimesh drops the NaN vertex and every face using it, which would leave a different shape.
    (tmp_path / "nan.obj").write_text(_TETRAHEDRON + "v nan 0 0\nf 5 2 3\n")
    with pytest.raises(ValueError, match=r"nan\.obj: the mesh has NaN or infinite vertex coordinates"):
        load_mesh_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_wlora.data"):
        shapes = load_mesh_folder(tmp_path, on_error="skip")
    assert [s.id for s in shapes] == ["good.obj"] and [p for p, _ in shapes.skipped] == [str(tmp_path / "nan.obj")]
    assert "nan.obj" in caplog.text


def test_degenerate_meshes_name_the_file_and_are_skipped(tmp_path, caplog):
    (tmp_path / "good.obj").write_text(_TETRAHEDRON)
    (tmp_path / "line.obj").write_text("v 0 0 0\nv 1 1 1\nv 2 2 2\nv 3 3 3\nf 1 2 3\nf 2 3 4\n")
    (tmp_path / "point.obj").write_text("v 1 2 3\nv 1 2 3\nv 1 2 3\nf 1 2 3\n")
    with pytest.raises(ValueError, match=r"line\.obj: the mesh has zero surface area.*Repair or remove"):
        load_mesh_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_wlora.data"):
        shapes = load_mesh_folder(tmp_path, on_error="skip")
    assert [s.id for s in shapes] == ["good.obj"]
    skipped = dict(shapes.skipped)
    assert set(skipped) == {str(tmp_path / "line.obj"), str(tmp_path / "point.obj")}
    assert all("zero surface area" in reason for reason in skipped.values())
    assert "line.obj" in caplog.text and "point.obj" in caplog.text


# ---------------------------------------------------------------------------------------------------------------
# SDF sample files
# ---------------------------------------------------------------------------------------------------------------


def _sphere_samples(scale=1.0):
    points = np.random.default_rng(0).uniform(-1, 1, (200, 3)) * scale
    return points, np.linalg.norm(points, axis=1) - 0.5 * scale


def test_sdf_values_that_are_not_distances_are_refused(tmp_path, caplog):
    points, sdf = _sphere_samples()
    save_sdf_samples(tmp_path / "good.npz", points, sdf)
    save_sdf_samples(tmp_path / "huge.npz", points, sdf * 50)
    largest = np.abs(sdf * 50).max()
    with pytest.raises(
        ValueError, match=rf"huge\.npz: \|sdf\| reaches {largest:.4g}, more than .* diagonal.*same units"
    ):
        load_sdf_samples(tmp_path)
    with caplog.at_level(logging.WARNING, logger="hf_wlora.data"):
        shapes = load_sdf_samples(tmp_path, on_error="skip")
    assert [s.id for s in shapes] == ["good.npz"] and shapes.skipped[0][0] == str(tmp_path / "huge.npz")
    assert "huge.npz" in caplog.text


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_sdf_samples_without_a_surface_are_refused(tmp_path, sign):
    points, sdf = _sphere_samples()
    save_sdf_samples(tmp_path / "one_sign.npz", points, sign * (np.abs(sdf) + 0.01))
    word = "positive" if sign > 0 else "negative"
    with pytest.raises(ValueError, match=rf"one_sign\.npz: every SDF value is {word}.*no surface"):
        load_sdf_samples(tmp_path)
    assert len(load_sdf_samples(tmp_path, on_error="skip").skipped) == 1


def test_sdf_sample_coordinates_must_lie_in_the_fields_cube(tmp_path):
    save_sdf_samples(tmp_path / "millimetres.npz", *_sphere_samples(scale=100.0))
    with pytest.raises(ValueError, match=r"millimetres\.npz: coordinates reach 9\d\.\d.*\[-1\.5, 1\.5\].*normalise"):
        load_sdf_samples(tmp_path)
    # Near-surface samples a little outside [-1, 1]^3, as in DeepSDF's sets, are accepted.
    (tmp_path / "millimetres.npz").unlink()
    save_sdf_samples(tmp_path / "noisy.npz", *_sphere_samples(scale=1.2))
    assert len(load_sdf_samples(tmp_path)) == 1


@pytest.mark.parametrize("name", ["random.npz", "random.npy"])
def test_random_bytes_are_unreadable_not_a_pickle_question(tmp_path, name):
    (tmp_path / name).write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(ValueError) as error:
        load_sdf_samples(tmp_path)
    message = str(error.value)
    assert message.startswith(str(tmp_path / name)) and "not a numpy" in message
    assert "allow_pickle" not in message and "pickle.load" not in message
    assert len(load_sdf_samples(tmp_path, on_error="skip").skipped) == 1


def test_npz_of_python_objects_is_refused_without_suggesting_pickle(tmp_path):
    np.savez(tmp_path / "objects.npz", points=np.array([object()] * 3), sdf=np.zeros(3))
    with pytest.raises(ValueError) as error:
        load_sdf_samples(tmp_path)
    message = str(error.value)
    assert message.startswith(str(tmp_path / "objects.npz")) and "Python objects" in message
    assert "allow_pickle" not in message
