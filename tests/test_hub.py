"""Sharing through the Hugging Face Hub (``simpleclip.hub``, ``simpleclip push``), offline.

The upload and download tests run huggingface_hub's real client code (``create_repo``,
``upload_folder``, ``snapshot_download``) against a stand-in Hub: a small HTTP server on
127.0.0.1 that speaks the few endpoints those calls use and keeps the repos in memory. It answers
"regular" to every preupload question, so files travel inline (base64 in the commit's NDJSON);
the real Hub sends large files through Xet/LFS instead, which this server does not imitate.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import huggingface_hub.constants
import pytest
import torch
import yaml

from simpleclip.cli import push as push_command
from simpleclip.evaluate import save_metrics
from simpleclip.hub import push_checkpoint, push_to_hub, save_pretrained
from simpleclip.model import CLIPModel, build_model
from simpleclip.model_card import model_card, read_metrics, write_model_card

TOKEN = "hf_stand_in_write_token"
METRICS = {  # the layout `simpleclip eval` writes, with values no model would round
    "t2i": {"R@1": 0.25, "R@5": 0.6064000129699707, "R@10": 0.75, "median_rank": 4.0},
    "i2t": {"R@1": 0.3125, "R@5": 0.625, "R@10": 0.7039999961853027, "median_rank": 3.0},
    "n_images": 12,
    "n_captions": 60,
}


@pytest.fixture
def tiny_model(synthetic_root: Path, tiny_tokenizer, tiny_config, tmp_path: Path) -> CLIPModel:
    return build_model(tiny_config(synthetic_root, tmp_path / "run"), tokenizer=tiny_tokenizer)


def embeddings(model: CLIPModel) -> tuple[torch.Tensor, torch.Tensor]:
    """The same pictures and captions through a model: (4, E) and (3, E)."""
    size = model.preprocessing.input_size
    images = torch.rand(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    batch = model.tokenize(["a red circle", "two blue squares on the left", "a small triangle"])
    with torch.no_grad():
        return model.eval().encode_image(images), model.encode_text(**batch)


def files_under(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def front_matter(card: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", card, re.DOTALL)
    assert match, "a model card starts with YAML front matter"
    return yaml.safe_load(match.group(1))


# --- the stand-in Hub -------------------------------------------------------------------------


class StandInHub(BaseHTTPRequestHandler):
    """create repo, validate-yaml, preupload, commit; repo info, tree, resolve (downloads)."""

    repos: dict[str, dict]  # repo_id -> {"files": {path: bytes}, "sha": str, "created": payload}
    cards: list[str]  # every README.md sent to validate-yaml

    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass

    def reply(self, status: int, body: object = None, headers: dict | None = None) -> None:
        data = (
            b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        )
        self.send_response(status)
        for key, value in {"Content-Length": str(len(data)), **(headers or {})}.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_POST(self) -> None:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self.reply(401, {"error": "Invalid credentials in Authorization header"})
        body = self.rfile.read(int(self.headers["Content-Length"]))
        path = urlsplit(self.path).path
        if path == "/api/repos/create":
            payload = json.loads(body)
            repo_id = f"{payload['organization']}/{payload['name']}"
            self.repos.setdefault(repo_id, {"files": {}, "sha": "0" * 40, "created": payload})
            return self.reply(200, {"url": f"http://{self.headers['Host']}/{repo_id}"})
        if path == "/api/validate-yaml":
            self.cards.append(json.loads(body)["content"])
            return self.reply(200, {})
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/preupload/main", path):
            files = json.loads(body)["files"]
            modes = [
                {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files
            ]
            return self.reply(200, {"files": modes})
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/commit/main", path):
            repo = self.repos[match.group(1)]
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    repo["files"][item["value"]["path"]] = base64.b64decode(
                        item["value"]["content"]
                    )
            repo["sha"] = hashlib.sha1(repr(sorted(repo["files"].items())).encode()).hexdigest()
            url = f"http://{self.headers['Host']}/{match.group(1)}/commit/{repo['sha']}"
            return self.reply(200, {"commitUrl": url, "commitOid": repo["sha"]})
        self.reply(404, {"error": f"stand-in Hub: no route for POST {path}"})

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/revision/[^/]+", path):
            repo = self.repos[match.group(1)]
            siblings = [{"rfilename": name} for name in repo["files"]]
            return self.reply(200, {"id": match.group(1), "sha": repo["sha"], "siblings": siblings})
        if match := re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/[^/]+", path):
            files = self.repos[match.group(1)]["files"]
            tree = [
                {
                    "type": "file",
                    "path": name,
                    "size": len(data),
                    "oid": hashlib.sha1(data).hexdigest(),
                }
                for name, data in files.items()
            ]
            return self.reply(200, tree)
        if match := re.fullmatch(r"/([^/]+/[^/]+)/resolve/[^/]+/(.+)", path):
            repo = self.repos[match.group(1)]
            data = repo["files"][match.group(2)]
            etag = f'"{hashlib.sha1(data).hexdigest()}"'
            return self.reply(200, data, {"X-Repo-Commit": repo["sha"], "ETag": etag})
        self.reply(404, {"error": f"stand-in Hub: no route for GET {path}"})

    do_HEAD = do_GET


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, StandInHub]]:
    """(endpoint URL, handler class holding the repos); the Hub client allowed online for it."""
    handler = type("Hub", (StandInHub,), {"repos": {}, "cards": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # conftest sets HF_HUB_OFFLINE=1 so nothing reaches huggingface.co; this server is local.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


# --- tests ------------------------------------------------------------------------------------


def test_save_pretrained_then_from_pretrained_gives_identical_embeddings(
    tiny_model: CLIPModel, tmp_path: Path
) -> None:
    folder = save_pretrained(tiny_model, tmp_path / "shared")
    assert {"model.safetensors", "config.yaml", "README.md"} <= set(files_under(folder))
    loaded = CLIPModel.from_pretrained(str(folder))
    for before, after in zip(embeddings(tiny_model), embeddings(loaded), strict=True):
        assert torch.equal(before, after)
    assert torch.equal(CLIPModel.load(folder).logit_scale, tiny_model.logit_scale)  # load unchanged


def test_model_card_metadata_and_table_come_from_the_metrics_files(
    tiny_model: CLIPModel, tmp_path: Path
) -> None:
    folder = save_pretrained(tiny_model, tmp_path / "model")
    save_metrics(METRICS, folder / "metrics_test.json")
    card = write_model_card(folder, name="alice/tiny-clip").read_text()
    meta = front_matter(card)
    assert meta["library_name"] == "simpleclip" and meta["metrics"] == ["recall"]
    assert {"clip", "contrastive", "image-text retrieval", "tiny"} <= set(meta["tags"])
    assert "datasets" not in meta  # synthetic shapes are not a Hub dataset
    (index,) = meta["model-index"]
    assert index["name"] == "alice/tiny-clip"
    measured = {
        (result["dataset"]["split"], metric["name"]): metric["value"]
        for result in index["results"]
        for metric in result["metrics"]
    }
    expected = {
        ("test", f"{d} {k}"): METRICS[d][k] for d in ("t2i", "i2t") for k in ("R@1", "R@5", "R@10")
    }
    assert measured == expected  # the JSON's values, unrounded
    assert "| test | Text-to-image retrieval | 25.0 | 60.6 | 75.0 |" in card
    assert 'model = CLIPModel.from_pretrained("alice/tiny-clip")' in card
    assert read_metrics(folder) == {"test": METRICS}


def test_model_card_names_a_known_dataset(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(tmp_path / "data" / "flickr8k", tmp_path / "run")
    meta = front_matter(str(model_card(config, "alice/x")))
    assert meta["datasets"] == ["flickr8k"] and "model-index" not in meta  # no metrics yet


def test_push_checkpoint_uploads_every_file_through_huggingface_hub(
    tiny_model: CLIPModel, hub: tuple[str, StandInHub], tmp_path: Path
) -> None:
    endpoint, server = hub
    folder = tiny_model.save(tmp_path / "run" / "best")
    save_metrics(METRICS, folder / "metrics_test.json")
    (folder / "trainer_state.pt").write_bytes(b"optimizer state: not for sharing")
    url = push_checkpoint(folder, "alice/tiny-clip", private=True, token=TOKEN, endpoint=endpoint)
    assert url == f"{endpoint}/alice/tiny-clip"
    repo = server.repos["alice/tiny-clip"]
    assert repo["created"]["visibility"] == "private"
    uploaded = dict(repo["files"])
    card = uploaded.pop("README.md").decode()
    local = files_under(folder)
    assert local.pop("trainer_state.pt")  # everything else arrives, byte for byte,
    assert uploaded.pop("config.yaml") != local.pop("config.yaml")  # but local paths are cut
    assert uploaded == local
    assert server.cards == [card]  # huggingface_hub checked the card's YAML before uploading
    assert front_matter(card)["model-index"][0]["name"] == "alice/tiny-clip"
    assert list(folder.glob("README.md")) == []  # the checkpoint folder itself is untouched


def test_push_to_hub_then_from_pretrained_by_repo_id_round_trips(
    tiny_model: CLIPModel, hub: tuple[str, StandInHub], tmp_path: Path
) -> None:
    endpoint, server = hub
    push_to_hub(tiny_model, "alice/tiny-clip", token=TOKEN, endpoint=endpoint)
    assert server.repos["alice/tiny-clip"]["created"].get("visibility") is None  # Hub default
    cache = tmp_path / "hub-cache"
    loaded = CLIPModel.from_pretrained("alice/tiny-clip", endpoint=endpoint, cache_dir=cache)
    assert list(cache.glob("models--alice--tiny-clip/snapshots/*/model.safetensors"))
    for before, after in zip(embeddings(tiny_model), embeddings(loaded), strict=True):
        assert torch.equal(before, after)


def test_a_transformers_clip_loads_by_hub_id_and_is_pushed_in_our_layout(
    clip_folder: Path, hub: tuple[str, StandInHub], tmp_path: Path
) -> None:
    endpoint, server = hub
    api = huggingface_hub.HfApi(endpoint=endpoint, token=TOKEN)
    api.create_repo("tiny-openai/clip", exist_ok=True)
    api.upload_folder(repo_id="tiny-openai/clip", folder_path=clip_folder)  # as the Hub holds it
    cache = tmp_path / "hub-cache"
    reference = embeddings(CLIPModel.load(clip_folder))
    loaded = CLIPModel.from_pretrained("tiny-openai/clip", endpoint=endpoint, cache_dir=cache)
    assert all(map(torch.equal, reference, embeddings(loaded)))

    push_checkpoint(clip_folder, "alice/tiny-openai-clip", token=TOKEN, endpoint=endpoint)
    shared = server.repos["alice/tiny-openai-clip"]["files"]
    assert {"config.yaml", "tokenizer/vocab.json", "text_model/config.json"} <= set(shared)
    assert yaml.safe_load(shared["config.yaml"])["image"]["name"] == "clip"
    card = shared["README.md"].decode()
    assert "not trained here" in card and "epochs" not in card  # no run to report
    assert "datasets" not in front_matter(card)
    again = CLIPModel.from_pretrained("alice/tiny-openai-clip", endpoint=endpoint, cache_dir=cache)
    assert all(map(torch.equal, reference, embeddings(again)))


def test_a_local_folder_wins_over_a_hub_id_of_the_same_name(
    tiny_model: CLIPModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    tiny_model.save("alice/tiny-clip")  # offline (conftest): a download attempt would fail
    loaded = CLIPModel.from_pretrained("alice/tiny-clip")
    assert torch.equal(embeddings(loaded)[1], embeddings(tiny_model)[1])


def test_an_unknown_hub_id_offline_says_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="HF_HUB_OFFLINE"):
        CLIPModel.from_pretrained("alice/never-pushed", cache_dir=tmp_path)


def test_a_rejected_token_says_how_to_log_in(
    tiny_model: CLIPModel, hub: tuple[str, StandInHub]
) -> None:
    with pytest.raises(RuntimeError, match=r"HTTP 401.*hf auth login"):
        push_to_hub(tiny_model, "alice/tiny-clip", token="hf_wrong", endpoint=hub[0])


def parse_push(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="simpleclip")
    push_command.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["push", *argv])


def test_push_command_uploads_and_says_how_to_load(
    tiny_model: CLIPModel, hub: tuple[str, StandInHub], tmp_path: Path, monkeypatch, capsys
) -> None:
    endpoint, server = hub
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)  # what HF_ENDPOINT sets
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = tiny_model.save(tmp_path / "model")
    args = parse_push("--checkpoint", str(folder), "--repo", "alice/tiny-clip")
    assert args.run(args) == 0
    assert 'CLIPModel.from_pretrained("alice/tiny-clip")' in capsys.readouterr().out
    assert "model.safetensors" in server.repos["alice/tiny-clip"]["files"]


def test_push_command_errors_say_how_to_fix_them(
    tiny_model: CLIPModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = parse_push("--checkpoint", str(tmp_path / "nothing"), "--repo", "alice/x")
    with pytest.raises(FileNotFoundError, match="No checkpoint"):
        args.run(args)
    folder = tiny_model.save(tmp_path / "model")
    with pytest.raises(ValueError, match="user/name"):
        args.run(parse_push("--checkpoint", str(folder), "--repo", "just-a-name", "--token", "t"))
    with pytest.raises(RuntimeError, match="unset it"):  # conftest's HF_HUB_OFFLINE=1
        args.run(parse_push("--checkpoint", str(folder), "--repo", "alice/x", "--token", "t"))
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(RuntimeError, match="hf auth login"):
        args.run(parse_push("--checkpoint", str(folder), "--repo", "alice/x"))


def test_nothing_shared_carries_a_local_path(
    tiny_config, synthetic_root: Path, tiny_tokenizer, hub: tuple[str, StandInHub], tmp_path: Path
) -> None:
    home = tmp_path / "home" / "alice"  # a user's home: its path must not travel
    config = tiny_config(home / "data" / "flickr8k_alice", home / "runs" / "mine")
    config.train.init_from = str(home / "runs" / "earlier" / "best")
    config.image.weights = str(home / "weights" / "tiny_cnn.safetensors")
    model = build_model(config, tokenizer=tiny_tokenizer)
    config.text.name = str(home / "models" / "MiniLM")  # as a run with a local text encoder
    model.config = config
    shared = save_pretrained(model, home / "share")
    endpoint, server = hub
    push_to_hub(model, "alice/tiny-clip", token=TOKEN, endpoint=endpoint)
    pushed = dict(server.repos["alice/tiny-clip"]["files"])
    for where, files in {"save_pretrained": files_under(shared), "push": pushed}.items():
        for name, content in files.items():
            if name.endswith((".yaml", ".json", ".md", ".txt")):
                text = content.decode()
                assert str(tmp_path) not in text and "/home/" not in text, (where, name, text)
    config_text = pushed["config.yaml"].decode()
    assert "root: flickr8k_alice" in config_text and "weights: tiny_cnn.safetensors" in config_text
    assert "name: MiniLM" in config_text
    card = files_under(shared)["README.md"].decode()
    assert "# share" in card and 'from_pretrained("share")' in card
    assert front_matter(card)["datasets"] == ["flickr8k"]  # the folder's name still tells it
    # what was shared still loads and embeds as the original model
    loaded = CLIPModel.load(shared)
    assert torch.equal(embeddings(loaded)[1], embeddings(model)[1])


def test_clip_finetune_starts_from_a_hub_id_and_its_card_links_it(
    clip_folder: Path,
    synthetic_root: Path,
    hub: tuple[str, StandInHub],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``train.init_from=owner/name`` downloads the CLIP as a user online would (here from the
    stand-in Hub, the default endpoint for this test); the fine-tune's card names it."""
    from simpleclip.cli import main
    from simpleclip.config import load_config

    endpoint, _ = hub
    api = huggingface_hub.HfApi(endpoint=endpoint, token=TOKEN)
    api.create_repo("tiny-openai/clip", exist_ok=True)
    api.upload_folder(repo_id="tiny-openai/clip", folder_path=clip_folder)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)  # as HF_ENDPOINT sets
    template = endpoint + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    out = tmp_path / "run"
    settings = ["train.init_from=tiny-openai/clip", f"data.root={synthetic_root}"]
    settings += [f"train.out_dir={out}", "train.epochs=1", "train.batch_size=32"]
    settings += ["data.num_workers=0"]
    assert main(["train", "--config", "clip_finetune", *(f"--set={s}" for s in settings)]) == 0
    assert load_config(out / "best" / "config.yaml").train.init_from == "tiny-openai/clip"
    tuned = CLIPModel.load(out / "best")  # started from the download: CLIP's temperature
    assert tuned.logit_scale.item() == pytest.approx(
        CLIPModel.load(clip_folder).logit_scale.item(), abs=1e-3
    )
    card = write_model_card(out / "best", "alice/flickr8k-clip").read_text()
    assert front_matter(card)["base_model"] == "tiny-openai/clip"
    assert "`tiny-openai/clip` fine-tuned with simpleclip" in card
