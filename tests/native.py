"""Generators of each source's exact native layout and file naming (REFERENCE.md §2), for tests.

Each writes small synthetic images but real structure: folder names, file names, JSON and COCO
schemas as the published datasets have them, so the organisers are tested against the real
conventions without the real downloads.
"""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
BSDATA_SAMPLE = SHARED / "fixtures" / "bsdata-sample"


def make_realiad(root: Path, category: str = "audiojack") -> Path:
    """Real-IAD's layout: one OK sample and two NG samples, 5 camera views each (32x24 JPEGs).

    Sample 0057 (HS, scratch) shows its defect in views C1-C3 only; C4 and C5 are labelled OK,
    as about 27k of Real-IAD's NG-folder images are. Sample 0058 is ZW (contamination).
    """
    rng = np.random.default_rng(0)
    entries = []

    def shot(folder: str, name: str, defect: bool) -> dict:
        path = root / category / folder / f"{name}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)
        mask_path = None
        if defect:
            mask = np.zeros((24, 32), dtype=np.uint8)
            mask[4:9, 10:20] = 255
            Image.fromarray(mask).save(path.with_suffix(".png"))
            mask_path = f"{folder}/{name}.png"
        return {"image_path": f"{folder}/{name}.jpg", "mask_path": mask_path}

    for view in range(1, 6):
        entries.append({"category": category, "anomaly_class": "OK",
                        **shot("OK/S0001", f"{category}_0001_OK_C{view}_20230612101010", False)})
        visible = view <= 3
        entries.append({"category": category, "anomaly_class": "HS" if visible else "OK",
                        **shot("NG/HS/S0057", f"{category}_0057_NG_HS_C{view}_20230612111111", visible)})
        entries.append({"category": category, "anomaly_class": "ZW",
                        **shot("NG/ZW/S0058", f"{category}_0058_NG_ZW_C{view}_20230612121212", True)})
    jsons = root / "realiad_jsons"
    jsons.mkdir(parents=True, exist_ok=True)
    meta = {"prefix": f"{category}/", "normal_class": "OK"}
    (jsons / f"{category}.json").write_text(json.dumps({"meta": meta, "train": entries[:9], "test": entries[9:]}))
    return root


WIDTH, HEIGHT = 40, 30
PROJECTS = {"Casting": "casting-defects", "Cylinder": "cylinder-fhjzu"}  # Roboflow project names
CLASSES = {"Casting": ["Inclusoes", "Rechupe"], "Cylinder": ["Chip", "PistonMiss", "Porosity", "RCS"]}
# (sub-dataset, split) -> images: (file name, annotations as (native class, polygons))
LAYOUT = {
    ("Casting", "train"): [
        ("000001.jpg", [("Inclusoes", [[2.5, 3.2, 12.7, 4.1, 8.3, 11.9]]),
                        ("Inclusoes", [[20, 20, 30.5, 21, 25, 28.4], [33, 2, 38, 2, 38, 7, 33, 7]])]),
        ("000002_jpg.rf.3f9c1a.jpg", [("Rechupe", [[5, 5, 15, 5, 10, 14.6]]),
                                      ("Inclusoes", [[22.2, 8, 35, 9.5, 28, 19]])]),
        ("000003.jpg", []),
    ],
    ("Casting", "val"): [
        ("000001.jpg", [("Rechupe", [[0, 0, 9.5, 0, 0, 9.5]])]),  # same name as a train image
        ("000004.jpg", []),
    ],
    ("Casting", "inference"): [("000009.jpg", [("Rechupe", [[1, 1, 9, 1, 5, 8]])])],
    ("Cylinder", "train"): [("cyl_a.jpg", [("PistonMiss", [[-4.5, 10, 15, -3, 45, 33.3]])])],  # partly outside
    ("Cylinder", "val"): [("cyl_b.jpg", [("RCS", [[3, 25.5, 36.2, 26, 36, 28.7, 3.3, 28]])]), ("cyl_c.jpg", [])],
    ("Cylinder", "inference"): [("cyl_d.jpg", [])],
}


def _coco(subset: str, images: list, placeholder_id: int) -> dict:
    """A Roboflow-style COCO export: the placeholder category is the project, parent of the classes."""
    project, classes = PROJECTS[subset], CLASSES[subset]
    ids = [i for i in range(len(classes) + 1) if i != placeholder_id][: len(classes)]
    categories = [{"id": placeholder_id, "name": project, "supercategory": "none"}]
    categories += [{"id": i, "name": name, "supercategory": project} for i, name in zip(ids, classes)]
    category_id = dict(zip(classes, ids))
    coco = {"info": {"year": "2023", "version": "1", "description": "Exported from roboflow.ai",
                     "contributor": "", "url": f"https://app.roboflow.ai/datasets/{project}/1",
                     "date_created": "2023-03-01T10:00:00+00:00"},
            "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
            "categories": categories, "images": [], "annotations": []}
    for image_id, (file_name, labelled) in enumerate(images):
        coco["images"].append({"id": image_id, "license": 1, "file_name": file_name, "height": HEIGHT,
                               "width": WIDTH, "date_captured": "2023-03-01T10:00:00+00:00"})
        for native, polygons in labelled:
            xs = [v for p in polygons for v in p[0::2]]
            ys = [v for p in polygons for v in p[1::2]]
            coco["annotations"].append({
                "id": len(coco["annotations"]), "image_id": image_id, "category_id": category_id[native],
                "segmentation": polygons, "area": 10.0, "iscrowd": 0,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]})
    return coco


def make_vision(root: Path, layout: dict = LAYOUT, placeholder_id: int = 0) -> Path:
    """VISION's extracted layout: <Name>/{train,val,inference}/_annotations.coco.json + JPEGs."""
    rng = np.random.default_rng(0)
    for (subset, split), images in layout.items():
        folder = root / subset / split
        folder.mkdir(parents=True)
        for file_name, _ in images:
            Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(folder / file_name)
        (folder / "_annotations.coco.json").write_text(json.dumps(_coco(subset, images, placeholder_id)))
    return root


def zip_folder(folder: Path, prefix: str = "") -> bytes:
    """A zip of ``folder``'s files, each under ``prefix`` (an archive's wrapping folder, or none)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                bundle.write(path, f"{prefix}{path.relative_to(folder).as_posix()}")
    return buffer.getvalue()


def tar_gz_folder(folder: Path, name: str) -> bytes:
    """A .tar.gz holding ``folder`` as ``name/`` (VISION's per-sub-dataset archives)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as bundle:
        bundle.add(folder, arcname=name)
    return buffer.getvalue()


BSDATA_INITIAL = "da45cf0103a74b3cd2525044e82cbf01498fca92"  # data.zip and label.zip
BSDATA_FOLDERS = "0d27ec19d8191a87bc39077f1339ad752beeee30"  # the first tree with data/ and label/: the pin
BSDATA_HEAD = "7204b28a621733c01cd75899ed9ea27f6ea0b9e3"  # 2025-08-29: adds an LFS saved_model/
# every file of each commit's tree other than the dataset's (data/, label/, image_data.json, LICENSE),
# as `git ls-tree -r` lists them at 2Obe/BSData; the contents are stand-ins of the real files' kinds
_LFS_POINTER = "version https://git-lfs.github.com/spec/v1\noid sha256:{:064x}\nsize 13171996\n"
BSDATA_OTHER_FILES = {
    BSDATA_INITIAL: {"README.md": "# BSData\n", "split_dataset.py": "# the authors' split script\n"},
    BSDATA_FOLDERS: {"README.md": "# BSData\n", "split_dataset.py": "# the authors' split script\n",
                     "demo/demo.jpg": "a demo picture\n"},
    BSDATA_HEAD: {
        ".gitattributes": "saved_model/** filter=lfs diff=lfs merge=lfs -text\n",
        "README.md": "# BSData\n", "split_dataset.py": "# the authors' split script\n",
        "demo/BSD_Surface_Defect_Dataset_for_Classification.png": "a demo picture\n",
        "demo/demo.png": "a demo picture\n",
        **{f"saved_model/{name}": _LFS_POINTER.format(number) for number, name in enumerate(
            ("saved_model.pb", "variables/variables.data-00000-of-00002",
             "variables/variables.data-00001-of-00002", "variables/variables.index"))},
    },
}


def make_bsdata_repository(root: Path, commit: str = BSDATA_HEAD) -> Path:
    """2Obe/BSData's tree at ``commit`` (one of BSDATA_OTHER_FILES), with the real sample as its
    dataset: ``data/`` and ``label/`` folders, or at the initial commit ``data.zip`` and ``label.zip``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("image_data.json", "LICENSE"):
        shutil.copyfile(BSDATA_SAMPLE / name, root / name)
    for name in ("data", "label"):
        if commit == BSDATA_INITIAL:
            (root / f"{name}.zip").write_bytes(zip_folder(BSDATA_SAMPLE / name, prefix=f"{name}/"))
        else:
            shutil.copytree(BSDATA_SAMPLE / name, root / name)
    for name, text in BSDATA_OTHER_FILES[commit].items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def github_archive(folder: Path, repository: str, commit: str) -> bytes:
    """GitHub's ``archive/<commit>.zip`` of a tree: everything under ``<repository>-<commit>/``,
    folders as entries of their own, as ``git archive`` writes them."""
    buffer = io.BytesIO()
    prefix = f"{repository}-{commit}/"
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(prefix, b"")
        for path in sorted(folder.rglob("*")):
            name = prefix + path.relative_to(folder).as_posix()
            if path.is_dir():
                bundle.writestr(name + "/", b"")
            else:
                bundle.write(path, name)
    return buffer.getvalue()


def make_prreal(root: Path) -> Path:
    """PR-REAL in the unified layout (its only accepted form): one class, OK and two defects."""
    rng = np.random.default_rng(5)

    def image(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(path)

    for number in range(3):
        image(root / "PRR" / "OK" / "image" / f"ok_{number}.png")
    for defect, box in (("dent", (2, 9, 3, 12)), ("burr", (10, 20, 5, 25))):
        for number in range(2):
            image(root / "PRR" / "NG" / defect / "image" / f"{defect}_{number}.png")
            mask = np.zeros((24, 32), dtype=np.uint8)
            mask[box[0]:box[1], box[2]:box[3]] = 255
            (root / "PRR" / "NG" / defect / "mask").mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(root / "PRR" / "NG" / defect / "mask" / f"{defect}_{number}.png")
    return root


def make_mmad_files(benchmark: Path, out: Path) -> dict[str, bytes]:
    """MMAD's three files from an MMAD-format folder: ``mmad.json``, ``domain_knowledge.json``
    and ``ALL_DATA.zip`` holding every other file (wrapped in one folder, as archives often are)."""
    images = out / "images"
    shutil.copytree(benchmark, images, ignore=shutil.ignore_patterns("mmad.json", "fetch.json"))
    knowledge = {"Demo": {"washer": "A washer is a thin flat ring."}}
    return {
        "mmad.json": (benchmark / "mmad.json").read_bytes(),
        "domain_knowledge.json": json.dumps(knowledge).encode(),
        "ALL_DATA.zip": zip_folder(images, prefix="ALL_DATA/"),
    }
