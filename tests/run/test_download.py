"""`zoo-bench data get`: download from a local HTTP server, verify, lay out, skip corrupt files."""
import hashlib
import http.server
import io
import threading
import zipfile
from functools import partial

import pytest
from PIL import Image

from zoo_bench.cli import main


def jpeg_bytes(colour) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (20, 20), colour).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture()
def archive_server(tmp_path):
    """A PetImages-shaped zip with corrupt members, served on 127.0.0.1 for the length of a test."""
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "pets.zip", "w") as zf:
        for i in range(1, 11):
            zf.writestr(f"PetImages/Cat/{i}.jpg", jpeg_bytes((200, 0, 0)))
            zf.writestr(f"PetImages/Dog/{i}.jpg", jpeg_bytes((0, 0, 200)))
        zf.writestr("PetImages/Cat/666.jpg", b"")                    # empty
        zf.writestr("PetImages/Dog/11702.jpg", b"GIF89a not a jpeg")  # wrong format
        zf.writestr("PetImages/Cat/Thumbs.db", b"junk")              # not an image name
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    sha = hashlib.sha256((served / "pets.zip").read_bytes()).hexdigest()
    yield f"http://127.0.0.1:{server.server_address[1]}/pets.zip", sha
    server.shutdown()


def test_download_verifies_and_lays_out(archive_server, tmp_path, capsys):
    url, sha = archive_server
    rc = main(["data", "get", "cats_dogs", "--url", url, "--sha256", sha,
               "--data-root", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    root = tmp_path / "data" / "cats_dogs"
    assert sorted(p.name for p in (root / "test" / "cat").iterdir()) == ["cat.10.jpg", "cat.5.jpg"]
    assert len(list((root / "train" / "dog").iterdir())) == 8
    assert "skipped_corrupt 2" in capsys.readouterr().err


def test_checksum_mismatch_is_an_error(archive_server, tmp_path, capsys):
    url, _ = archive_server
    rc = main(["data", "get", "cats_dogs", "--url", url, "--sha256", "0" * 64,
               "--data-root", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err
    assert rc == 2 and "checksum mismatch" in err and "Traceback" not in err
    assert not (tmp_path / "data" / "cats_dogs").exists()


def test_offline_says_so_in_one_line(tmp_path, capsys):
    rc = main(["data", "get", "cats_dogs", "--url", "http://127.0.0.1:9/pets.zip", "--sha256", "0" * 64,
               "--data-root", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: cannot download http://127.0.0.1:9/pets.zip") and "offline" in err
