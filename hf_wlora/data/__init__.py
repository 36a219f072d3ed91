"""Data sources for stage 1: built-in generated images and shapes, loaders for users' data, and samplers.

Every source yields `ImageInstance`s or `ShapeInstance`s in an `InstanceDataset` (with `class_names` and a
`skipped` report), so later stages never care where data came from:

- built-in: `GlyphImages` (2-D, ten digit classes), `ProceduralShapes` (3-D, ten categories, exact SDFs);
- users' data: `load_image_folder`, `load_hf_images`, `load_mesh_folder`, `load_sdf_samples`;
- samplers: `image_grid_samples`, `random_pixel_samples`, `sample_sdf`, `sample_surface`, ...

This package is the lowest layer: it imports nothing else from hf_wlora. Names are imported on first access, and
heavy libraries (datasets, trimesh, torch) only inside the functions that need them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_attributes

# public name -> submodule that defines it
_LAZY_ATTRIBUTES: dict[str, str] = {
    "DATA_SOURCES": ".sources",
    "data_modality": ".sources",
    "open_data_source": ".sources",
    "parse_data_source": ".sources",
    "ImageInstance": ".base",
    "ShapeInstance": ".base",
    "InstanceDataset": ".base",
    "ImageCollection": ".base",
    "ShapeCollection": ".base",
    "GlyphImages": ".glyphs",
    "GLYPH_CLASS_NAMES": ".glyphs",
    "render_glyph": ".glyphs",
    "ProceduralShapes": ".shapes",
    "SHAPE_CLASS_NAMES": ".shapes",
    "PrimitiveUnion": ".shapes",
    "make_shape": ".shapes",
    "pixel_centers": ".sampling",
    "image_grid_samples": ".sampling",
    "random_pixel_samples": ".sampling",
    "uniform_points": ".sampling",
    "sdf_gradient": ".sampling",
    "project_to_surface": ".sampling",
    "surface_points_from_sdf": ".sampling",
    "mesh_surface_points": ".sampling",
    "near_surface_points": ".sampling",
    "sample_surface": ".sampling",
    "sample_sdf": ".sampling",
    "IMAGE_EXTENSIONS": ".images",
    "center_crop_resize": ".images",
    "to_image_array": ".images",
    "load_image_folder": ".images",
    "load_hf_images": ".images",
    "MESH_EXTENSIONS": ".meshes",
    "read_mesh": ".meshes",
    "normalize_mesh": ".meshes",
    "mesh_to_shape": ".meshes",
    "load_mesh_folder": ".meshes",
    "MeshSDF": ".mesh_sdf",
    "SDF_EXTENSIONS": ".sdf_files",
    "read_sdf_file": ".sdf_files",
    "save_sdf_samples": ".sdf_files",
    "load_sdf_samples": ".sdf_files",
}

if TYPE_CHECKING:
    from .base import ImageCollection, ImageInstance, InstanceDataset, ShapeCollection, ShapeInstance
    from .glyphs import GLYPH_CLASS_NAMES, GlyphImages, render_glyph
    from .images import IMAGE_EXTENSIONS, center_crop_resize, load_hf_images, load_image_folder, to_image_array
    from .mesh_sdf import MeshSDF
    from .meshes import MESH_EXTENSIONS, load_mesh_folder, mesh_to_shape, normalize_mesh, read_mesh
    from .sampling import (
        image_grid_samples,
        mesh_surface_points,
        near_surface_points,
        pixel_centers,
        project_to_surface,
        random_pixel_samples,
        sample_sdf,
        sample_surface,
        sdf_gradient,
        surface_points_from_sdf,
        uniform_points,
    )
    from .sdf_files import SDF_EXTENSIONS, load_sdf_samples, read_sdf_file, save_sdf_samples
    from .shapes import SHAPE_CLASS_NAMES, PrimitiveUnion, ProceduralShapes, make_shape
    from .sources import DATA_SOURCES, data_modality, open_data_source, parse_data_source

# Kept literal so linters and IDEs see the re-exports; a test checks it matches _LAZY_ATTRIBUTES.
__all__ = [
    "DATA_SOURCES",
    "GLYPH_CLASS_NAMES",
    "IMAGE_EXTENSIONS",
    "MESH_EXTENSIONS",
    "SDF_EXTENSIONS",
    "SHAPE_CLASS_NAMES",
    "GlyphImages",
    "ImageCollection",
    "ImageInstance",
    "InstanceDataset",
    "MeshSDF",
    "PrimitiveUnion",
    "ProceduralShapes",
    "ShapeCollection",
    "ShapeInstance",
    "center_crop_resize",
    "data_modality",
    "image_grid_samples",
    "load_hf_images",
    "load_image_folder",
    "load_mesh_folder",
    "load_sdf_samples",
    "make_shape",
    "mesh_surface_points",
    "mesh_to_shape",
    "near_surface_points",
    "normalize_mesh",
    "open_data_source",
    "parse_data_source",
    "pixel_centers",
    "project_to_surface",
    "random_pixel_samples",
    "read_mesh",
    "read_sdf_file",
    "render_glyph",
    "sample_sdf",
    "sample_surface",
    "save_sdf_samples",
    "sdf_gradient",
    "surface_points_from_sdf",
    "to_image_array",
    "uniform_points",
]


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY_ATTRIBUTES, __all__)
