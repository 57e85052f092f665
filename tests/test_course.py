"""The course settings (tracks, SIMPLECLIP_SET, paths) and the labels read from captions."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simpleclip.course import course_setup, find_repo_root, select_track
from simpleclip.zeroshot.caption_labels import caption_labels, majority_baseline, top1_accuracy


@pytest.mark.parametrize(
    ("environ", "cuda", "track"),
    [
        ({}, False, "cpu"),
        ({}, True, "gpu"),
        ({"CI": "true"}, True, "smoke"),
        ({"SIMPLECLIP_SMOKE": "1"}, False, "smoke"),
        ({"SIMPLECLIP_SMOKE": "0"}, False, "cpu"),
        ({"SIMPLECLIP_TRACK": "cpu", "CI": "true"}, True, "cpu"),  # explicit beats CI
        ({"SIMPLECLIP_TRACK": " GPU "}, False, "gpu"),
    ],
)
def test_select_track(environ: dict[str, str], cuda: bool, track: str) -> None:
    assert select_track(environ, cuda=cuda) == track


def test_an_unknown_track_names_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"SIMPLECLIP_TRACK='laptop'.*smoke, cpu, gpu"):
        select_track({"SIMPLECLIP_TRACK": "laptop"}, cuda=False)


def test_course_setup_reads_paths_from_the_repository_root(tmp_path: Path, capsys) -> None:
    (tmp_path / "notebooks").mkdir()
    weights = tmp_path / "w.safetensors"
    environ = {
        "SIMPLECLIP_TRACK": "cpu",
        "SIMPLECLIP_SET": f"data.root=../photos 'image.weights={weights}' text.name=./minilm "
        "train.epochs=3",
    }
    course = course_setup(environ=environ, start=tmp_path / "notebooks")
    assert course.track == "cpu" and not course.smoke
    assert course.repo_root == tmp_path.resolve()
    # Relative to the repository root, not to notebooks/ where the kernel runs.
    assert course.data_root == (tmp_path / ".." / "photos").resolve()
    assert course.config.text.name == str((tmp_path / "minilm").resolve())
    assert course.config.image.weights == str(weights)
    assert course.run_dir == tmp_path.resolve() / "runs" / "course-cpu"
    assert course.config.train.epochs == 3
    assert course.config.image.name == "efficientnet_lite0"  # the track's own config
    assert course.config.train.cache_features
    printed = capsys.readouterr().out
    assert "Course track 'cpu'" in printed and "train.epochs=3" in printed
    # What the first cell prints names no machine's folders: paths are relative to the repo.
    assert str(tmp_path) not in printed, printed
    assert "image.weights=w.safetensors" in printed and "course model: runs/course-cpu" in printed
    assert "data: ../photos" in printed and "text encoder: minilm" in printed


def test_paths_are_shown_relative_to_the_repository_or_home(tmp_path: Path) -> None:
    from simpleclip.paths import shown_path

    repo = tmp_path / "work" / "repo"
    assert shown_path(repo / "runs" / "a", repo) == "runs/a"
    assert shown_path(tmp_path / "work" / "shared" / "x", repo) == "../shared/x"
    assert shown_path(Path.home() / ".cache" / "w", repo) == "~/.cache/w"
    assert shown_path("sentence-transformers/all-MiniLM-L6-v2", repo).startswith("sentence")
    far = "/nonexistent-top/data"  # neither near nor in the home folder: as given
    assert shown_path(far, repo) == far


def test_a_hub_id_is_not_taken_for_a_path(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    course = course_setup("gpu", environ={}, start=tmp_path)
    assert course.config.text.name == "distilbert-base-uncased"
    assert course.config.image.name == "resnet50" and course.config.text.trainable


def test_a_bad_override_fails_with_the_config_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epochs"):
        course_setup("smoke", environ={"SIMPLECLIP_SET": "train.epochs=two"}, start=tmp_path)


def test_repo_root_is_found_from_a_sub_folder(tmp_path: Path) -> None:
    (tmp_path / "notebooks" / "deep").mkdir(parents=True)
    assert find_repo_root(tmp_path / "notebooks" / "deep") == tmp_path.resolve()


def test_caption_labels_are_whole_words_from_any_caption() -> None:
    captions = pd.DataFrame(
        {
            "image": ["a.jpg", "a.jpg", "b.jpg", "c.jpg"],
            "caption": [
                "Two DOGS play in the snow .",
                "A woman walks near a lake",
                "A manhole cover on a road",  # "man" inside a word does not count
                "Children and men on the beach",
            ],
        }
    )
    labels = caption_labels(captions)
    assert labels == {
        "a.jpg": {"dog", "snow", "woman", "water"},
        "b.jpg": set(),
        "c.jpg": {"child", "man", "beach"},
    }


def test_accuracy_and_the_majority_baseline() -> None:
    truths = [{"dog", "water"}, {"dog"}, {"man"}, {"child", "man"}]
    assert top1_accuracy(["water", "man", "man", "dog"], truths) == 0.5
    label, share = majority_baseline(truths)
    assert (label, share) in {("dog", 0.5), ("man", 0.5)}
    with pytest.raises(ValueError, match="one prediction per photo"):
        top1_accuracy(["dog"], truths)
    with pytest.raises(ValueError, match="No photo has a label"):
        majority_baseline([set(), set()])


def test_a_new_course_model_removes_what_07_and_08_derived_from_the_old_one(
    tmp_path: Path, capsys
) -> None:
    (tmp_path / "notebooks").mkdir()
    course = course_setup(environ={"SIMPLECLIP_TRACK": "smoke"}, start=tmp_path / "notebooks")
    run = course.run_dir
    (run / "figures").mkdir(parents=True)
    (run / "figures" / "failure_1.png").write_bytes(b"old")
    (run / "metrics_test.json").write_text("{}")
    (run / "my_notes.md").write_text("mine")  # not the course's: it stays
    capsys.readouterr()
    assert course.remove_derived() == ["metrics_test.json", "figures"]
    assert sorted(p.name for p in run.iterdir()) == ["my_notes.md"]
    assert "metrics_test.json, figures" in capsys.readouterr().out
    assert course.remove_derived() == []  # nothing left to remove: nothing said
    assert capsys.readouterr().out == ""
