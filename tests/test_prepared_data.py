"""KTH and BAIR DataModules over prepared layouts, and the experiments on prepared fixtures."""

import json
import pickle

import numpy as np
import pytest
import torch

from svg_lightning.data.datamodules import BAIRDataModule, KTHDataModule
from svg_lightning.data.prepare import prepare
from svg_lightning.errors import ConfigError, DataNotPreparedError, DataSourceError
from tests.helpers.fixtures import make_tar, write_kth_videos, write_raw


def make_kth(root, size=64, persons=(1, 2, 21, 22), frames=(30, 8, 45, 50)):
    folder = root / f"kth{size}"
    (folder / "videos").mkdir(parents=True)
    videos = []
    for k, (person, n) in enumerate(zip(persons, frames)):
        name = f"person{person:02d}_boxing_d1"
        # frame t of video k has value k*50 + t so clips can be located exactly
        array = (k * 50 + np.arange(n, dtype=np.uint8))[:, None, None] * np.ones(
            (1, size, size), np.uint8
        )
        np.save(folder / "videos" / f"{name}.npy", array)
        videos.append({"name": name, "person": person, "action": "boxing", "scenario": 1,
                       "split": "train" if person <= 20 else "test", "frames": n,
                       "file": f"videos/{name}.npy", "segments": None})  # fmt: skip
    (folder / "index.json").write_text(
        json.dumps({"dataset": "kth", "size": size, "videos": videos})
    )


def make_bair(root, shards=((0, 3), (256, 2)), test=(4,)):
    folder = root / "bair"
    splits = {"train": [], "test": []}
    value = 0
    for split, spec in (("train", shards), ("test", [(0, n) for n in test])):
        (folder / split).mkdir(parents=True, exist_ok=True)
        for start, n in spec:
            stem = f"traj_{start}_to_{start + 255}"
            array = np.zeros((n, 30, 64, 64, 3), np.uint8)
            for i in range(n):
                array[i] = (value + np.arange(30, dtype=np.uint8))[:, None, None, None]
                value += 1
            np.save(folder / split / f"{stem}.npy", array)
            splits[split].append({"file": f"{split}/{stem}.npy", "videos": n})
    (folder / "index.json").write_text(json.dumps({"dataset": "bair", "splits": splits}))


def test_kth_clips_split_by_person_and_fixed_test(tmp_path):
    make_kth(tmp_path)
    dm = KTHDataModule(
        str(tmp_path), n_past=4, n_future=6, batch_size=2, val_videos=3, test_videos=5
    )
    dm.setup("fit")
    # The 8-frame train video is too short for 10-frame clips; only person01 remains.
    assert [v[0] for v in dm.train_set.videos] == ["videos/person01_boxing_d1.npy"]
    item = dm.train_set[0]
    assert item["frames"].shape == (10, 1, 64, 64) and item["frames"].dtype == torch.float32
    first = round(item["frames"][0, 0, 0, 0].item() * 255)
    assert 0 <= first <= 20  # video 0 (values 0..29), start in [0, 20]
    steps = (item["frames"][:, 0, 0, 0] * 255).round()
    assert torch.equal(steps, first + torch.arange(10.0))
    test_values = {round(dm.test_set[i]["frames"][0, 0, 0, 0].item() * 255) // 50 for i in range(5)}
    assert test_values <= {2, 3}  # only persons 21 and 22
    again = KTHDataModule(str(tmp_path), n_past=4, n_future=6, val_videos=3, test_videos=5)
    again.setup("test")
    for i in range(5):
        assert torch.equal(dm.test_set[i]["frames"], again.test_set[i]["frames"])
    assert len(dm.val_set) == 3 and len(dm.test_set) == 5
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (2, 10, 1, 64, 64)


def test_kth_training_clips_are_fresh_and_reproducible(tmp_path):
    make_kth(tmp_path, frames=(60, 60, 60, 60))
    dm = KTHDataModule(str(tmp_path), n_past=2, n_future=2)
    dm.setup("fit")
    a = [dm.train_set[i]["frames"] for i in range(5)]
    again = KTHDataModule(str(tmp_path), n_past=2, n_future=2)
    again.setup("fit")
    assert all(torch.equal(x, again.train_set[i]["frames"]) for i, x in enumerate(a))
    assert len({x[0, 0, 0, 0].item() for x in a}) > 1  # different clips for different indices
    other = KTHDataModule(str(tmp_path), n_past=2, n_future=2, train_seed=7)
    other.setup("fit")
    assert not all(torch.equal(x, other.train_set[i]["frames"]) for i, x in enumerate(a))


def test_memmaps_are_reopened_in_workers_not_copied(tmp_path):
    make_kth(tmp_path)
    dm = KTHDataModule(str(tmp_path), n_past=2, n_future=2)
    dm.setup("fit")
    dm.test_set[0]
    assert dm.test_set.maps.maps  # opened here
    assert isinstance(next(iter(dm.test_set.maps.maps.values())), np.memmap)
    clone = pickle.loads(pickle.dumps(dm.test_set))
    assert clone.maps.maps == {}
    assert torch.equal(clone[0]["frames"], dm.test_set[0]["frames"])


def test_bair_test_videos_from_frame_zero_in_order(tmp_path):
    make_bair(tmp_path)
    dm = BAIRDataModule(str(tmp_path), n_past=2, n_future=10, val_videos=2)
    dm.setup("fit")
    assert len(dm.test_set) == 4 and len(dm.val_set) == 2
    firsts = [round(dm.test_set[i]["frames"][0, 0, 0, 0].item() * 255) for i in range(4)]
    assert firsts == [5, 6, 7, 8]  # train videos took values 0..4
    item = dm.train_set[0]
    assert item["frames"].shape == (12, 3, 64, 64)
    assert round(item["frames"][0, 0, 0, 0].item() * 255) in range(5)  # from frame 0
    rnd = BAIRDataModule(str(tmp_path), n_past=2, n_future=10, random_start=True)
    rnd.setup("fit")
    starts = set()
    for i in range(30):
        x = (rnd.train_set[i]["frames"][:, 0, 0, 0] * 255).round()
        starts.add(int(x[0]))
    assert len(starts) > 5


@pytest.mark.parametrize(
    "cls,cmd", [(KTHDataModule, "prepare kth"), (BAIRDataModule, "prepare bair")]
)
def test_unprepared_data_names_the_command(tmp_path, cls, cmd):
    dm = cls(str(tmp_path))
    with pytest.raises(DataNotPreparedError) as err:
        dm.setup("fit")
    assert "index.json does not exist" in str(err.value) and cmd in str(err.value)
    assert f"--out {tmp_path}" in str(err.value)


SMALL = ["n_past=2", "n_future=2", "data.batch_size=2", "data.num_workers=0", "data.val_videos=2",
         "data.test_videos=2", "model.g_dim=8", "model.rnn_size=8", "model.z_dim=2",
         "model.val_num_samples=2", "trainer.accelerator=cpu", "logger=csv"]  # fmt: skip


def kth_archives(tmp_path):
    rng = np.random.default_rng(0)
    videos = [
        (f"person{p:02d}_{action}_d1", rng.integers(0, 256, (12, 120, 160), dtype=np.uint8), where)
        for p, action, where in ((1, "boxing", "zip"), (2, "walking", "avi"),
                                 (21, "boxing", "zip"), (22, "running", "avi"))
    ]  # fmt: skip
    src, staging = tmp_path / "kth_src", tmp_path / "staging"
    src.mkdir()
    staging.mkdir()
    write_kth_videos(src, staging, videos)
    return src


def bair_archive(tmp_path):
    rng = np.random.default_rng(0)
    write_raw(tmp_path, rng, [("train", "traj_0_to_255", 3), ("test", "traj_0_to_255", 2)])
    return make_tar(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize(
    "experiment,archive", [("kth_lp", kth_archives), ("bair_lp", bair_archive)]
)
def test_experiment_runs_on_prepared_fixtures(tmp_path, capsys, experiment, archive):
    """The official formats -> the prepare command -> a fast_dev_run of the experiment."""
    from svg_lightning.api import train
    from svg_lightning.data.prepare.command import prepare_main
    from tests.conftest import compose_cfg

    dataset = experiment.split("_")[0]
    data = tmp_path / "data"
    assert prepare_main([dataset, "--src", str(archive(tmp_path)), "--out", str(data)]) == 0
    assert "skipped: 0" in capsys.readouterr().out
    train(compose_cfg(tmp_path, f"+experiment={experiment}", *SMALL, "debug=fdr"))


def test_prepare_refuses_missing_inputs_and_unknown_datasets(tmp_path):
    with pytest.raises(DataSourceError, match="bair_robot_pushing_dataset_v0.tar"):
        prepare("bair", tmp_path / "nope.tar", tmp_path)
    with pytest.raises(DataSourceError, match="boxing.zip"):
        prepare("kth", tmp_path, tmp_path, {"size": 64})
    with pytest.raises(ConfigError, match="'mnist'.*allowed"):
        prepare("mnist", tmp_path, tmp_path)


def test_prepare_command_reports_missing_inputs(tmp_path, capsys):
    from svg_lightning.data.prepare.command import prepare_main

    assert prepare_main(["bair", "--src", str(tmp_path / "nope.tar"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "bair_robot_pushing_dataset_v0.tar" in err and "Traceback" not in err
    assert prepare_main(["kth", "--src", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "boxing.zip" in capsys.readouterr().err


@pytest.mark.parametrize("dataset", ["kth", "bair"])
@pytest.mark.parametrize("empty", ["train", "test"])
def test_an_empty_split_is_refused(tmp_path, dataset, empty):
    if dataset == "kth":
        persons = (1, 2) if empty == "test" else (21, 22)
        make_kth(tmp_path, persons=persons, frames=(30, 30))
        dm = KTHDataModule(str(tmp_path), n_past=2, n_future=2)
    else:
        make_bair(
            tmp_path,
            shards=() if empty == "train" else ((0, 3),),
            test=() if empty == "test" else (4,),
        )
        dm = BAIRDataModule(str(tmp_path), n_past=2, n_future=2)
    with pytest.raises(DataNotPreparedError) as err:
        dm.setup("fit")
    msg = str(err.value)
    assert f"{empty} split is empty" in msg and str(dm.root / "index.json") in msg
    assert "index.json lists no" in msg and f"prepare {dataset} --src DIR --out {tmp_path}" in msg
    assert "\n" not in msg


def test_a_damaged_index_or_missing_file_is_refused(tmp_path):
    make_bair(tmp_path)
    (tmp_path / "bair" / "test" / "traj_0_to_255.npy").unlink()
    with pytest.raises(
        DataNotPreparedError, match="test shard 0: .*test/traj_0_to_255.npy does not exist"
    ):
        BAIRDataModule(str(tmp_path), n_past=2, n_future=2).setup("fit")
    (tmp_path / "bair" / "index.json").write_text('{"dataset": "ba')
    with pytest.raises(DataNotPreparedError, match="index.json cannot be read .*prepare bair"):
        BAIRDataModule(str(tmp_path), n_past=2, n_future=2).setup("fit")


@pytest.mark.parametrize("dataset", ["kth", "bair"])
def test_an_output_folder_that_cannot_be_written_is_refused_up_front(
    tmp_path, capsys, monkeypatch, dataset
):
    from svg_lightning.data.prepare.command import prepare_main
    from svg_lightning.data.sources import bair, kth

    src = kth_archives(tmp_path) if dataset == "kth" else bair_archive(tmp_path)

    def no_work(*args):
        raise AssertionError("converted before the output folder was checked")

    monkeypatch.setattr(kth, "_load", no_work)
    monkeypatch.setattr(bair, "_convert", no_work)
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    out = blocker / "data"  # root cannot create folders there either
    assert prepare_main([dataset, "--src", str(src), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    folder = out / ("kth64" if dataset == "kth" else "bair")
    assert err.startswith(f"error: cannot write to the output folder {folder}: Not a directory")
    assert "--out" in err and "\n" not in err and "Traceback" not in err
    assert blocker.read_text() == "not a folder"


def _edit_index(folder, edit):
    index = json.loads((folder / "index.json").read_text())
    edit(index)
    (folder / "index.json").write_text(json.dumps(index))


def _resave(path, convert):
    np.save(path, convert(np.load(path)))


KTH_VIDEO = "videos/person21_boxing_d1.npy"  # test video 2 of make_kth, 45 frames
KTH_TAMPERING = {
    "float32 in [0, 1]": (
        lambda f: _resave(f / KTH_VIDEO, lambda a: a.astype(np.float32) / 255),
        "video 2 (person21_boxing_d1): {root}/" + KTH_VIDEO + " holds float32 (45, 64, 64), "
        "expected uint8 (N, 64, 64)",
    ),
    "uint16": (lambda f: _resave(f / KTH_VIDEO, lambda a: a.astype(np.uint16)), "holds uint16"),
    "128 x 128 arrays": (
        lambda f: _resave(f / KTH_VIDEO, lambda a: np.repeat(np.repeat(a, 2, 1), 2, 2)),
        "holds uint8 (45, 128, 128), expected uint8 (N, 64, 64)",
    ),
    "RGB arrays": (
        lambda f: _resave(f / KTH_VIDEO, lambda a: np.stack([a] * 3, -1)),
        "holds uint8 (45, 64, 64, 3)",
    ),
    "fewer frames than listed": (
        lambda f: _resave(f / KTH_VIDEO, lambda a: a[:40]),
        "video 2 (person21_boxing_d1): lists 45 frames, but {root}/" + KTH_VIDEO + " holds 40",
    ),
    "a truncated .npy": (
        lambda f: (f / KTH_VIDEO).write_bytes((f / KTH_VIDEO).read_bytes()[:-100]),
        "{root}/" + KTH_VIDEO + " is not a readable .npy array",
    ),
    "a padded .npy": (
        lambda f: (f / KTH_VIDEO).write_bytes((f / KTH_VIDEO).read_bytes() + bytes(64)),
        "is 184512 bytes long, but its header describes 184448",
    ),
    "frame count too high": (
        lambda f: _edit_index(f, lambda i: i["videos"][2].update(frames=99)),
        "lists 99 frames, but",
    ),
    "a split named val": (
        lambda f: _edit_index(f, lambda i: i["videos"][2].update(split="val")),
        "video 2 (person21_boxing_d1): split 'val' is neither 'train' nor 'test'",
    ),
    "no split key": (
        lambda f: _edit_index(f, lambda i: i["videos"][2].pop("split")),
        "split None is neither",
    ),
    "frames as a string": (
        lambda f: _edit_index(f, lambda i: i["videos"][2].update(frames="45")),
        "frames '45' is not a count of frames",
    ),
    "a video listed again": (
        lambda f: _edit_index(f, lambda i: i["videos"].append(i["videos"][2])),
        "video 4 (person21_boxing_d1): " + KTH_VIDEO + " is listed again (first as video 2 ",
    ),
    "a file outside the data folder": (
        lambda f: _edit_index(f, lambda i: i["videos"][2].update(file="../../outside.npy")),
        "'file' '../../outside.npy' lies outside {root}",
    ),
    "no video list": (lambda f: _edit_index(f, lambda i: i.pop("videos")), "'videos' is a list"),
}


@pytest.mark.parametrize("case", KTH_TAMPERING)
def test_tampered_kth_data_is_refused_naming_the_file_and_the_fix(tmp_path, case):
    make_kth(tmp_path)
    dm = KTHDataModule(str(tmp_path), n_past=2, n_future=2)
    tamper, expected = KTH_TAMPERING[case]
    tamper(dm.root)
    with pytest.raises(DataNotPreparedError) as err:
        dm.check_available("fit")
    msg = str(err.value)
    assert msg.startswith(f"{dm.root / 'index.json'}: ") and "\n" not in msg
    assert expected.format(root=dm.root) in msg
    assert msg.endswith(f"prepare the KTH data again with: {dm.prepare_command()}")


BAIR_SHARD = "train/traj_0_to_255.npy"  # train shard 0 of make_bair: 3 videos
BAIR_TAMPERING = {
    "float32 in [0, 1]": (
        lambda f: _resave(f / BAIR_SHARD, lambda a: a.astype(np.float32) / 255),
        "train shard 0: {root}/" + BAIR_SHARD + " holds float32 (3, 30, 64, 64, 3), "
        "expected uint8 (N, 30, 64, 64, 3)",
    ),
    "fewer rows than listed": (
        lambda f: _resave(f / BAIR_SHARD, lambda a: a[:2]),
        "train shard 0: lists 3 videos, but {root}/" + BAIR_SHARD + " holds 2",
    ),
    "grey shards": (lambda f: _resave(f / BAIR_SHARD, lambda a: a[..., 0]), "(3, 30, 64, 64),"),
    "10-frame videos": (lambda f: _resave(f / BAIR_SHARD, lambda a: a[:, :10]), "(3, 10, 64"),
    "a split named val": (
        lambda f: _edit_index(f, lambda i: i["splits"].update(val=i["splits"]["test"])),
        "split 'val' is neither 'train' nor 'test'",
    ),
    "no test split": (
        lambda f: _edit_index(f, lambda i: i["splits"].pop("test")),
        "the BAIR test split is empty: index.json lists no test video",
    ),
    "a shard listed again": (
        lambda f: _edit_index(f, lambda i: i["splits"]["test"].append(i["splits"]["train"][0])),
        "test shard 1: " + BAIR_SHARD + " is listed again (first as train shard 0)",
    ),
    "videos as a string": (
        lambda f: _edit_index(f, lambda i: i["splits"]["train"][0].update(videos="3")),
        "train shard 0: videos '3' is not a count",
    ),
}


@pytest.mark.parametrize("case", BAIR_TAMPERING)
def test_tampered_bair_data_is_refused_naming_the_file_and_the_fix(tmp_path, case):
    make_bair(tmp_path)
    dm = BAIRDataModule(str(tmp_path), n_past=2, n_future=28)
    tamper, expected = BAIR_TAMPERING[case]
    tamper(dm.root)
    with pytest.raises(DataNotPreparedError) as err:
        dm.check_available("test")
    msg = str(err.value)
    assert msg.startswith(f"{dm.root / 'index.json'}: ") and "\n" not in msg
    assert expected.format(root=dm.root) in msg
    assert msg.endswith(f"prepare the BAIR data again with: {dm.prepare_command()}")


def test_every_problem_is_reported_at_once_one_line_each(tmp_path):
    make_kth(tmp_path)
    dm = KTHDataModule(str(tmp_path), n_past=2, n_future=2)
    _resave(dm.root / KTH_VIDEO, lambda a: a.astype(np.float32))
    (dm.root / "videos" / "person01_boxing_d1.npy").unlink()
    _edit_index(dm.root, lambda i: i["videos"][3].update(split="val"))
    with pytest.raises(DataNotPreparedError) as err:
        dm.setup("fit")
    lines = str(err.value).splitlines()
    assert lines[0] == f"{dm.root / 'index.json'} does not describe usable KTH data (3 problems):"
    assert lines[1].startswith("  video 0 (person01_boxing_d1): ") and "does not exist" in lines[1]
    assert lines[2].startswith("  video 2 (person21_boxing_d1): ") and "holds float32" in lines[2]
    assert lines[3] == "  video 3 (person22_boxing_d1): split 'val' is neither 'train' nor 'test'"
    assert lines[4] == f"prepare the KTH data again with: {dm.prepare_command()}"
    assert len(lines) == 5
