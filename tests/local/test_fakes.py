"""`make run`'s offline destinations: one fake per destination connection that points at this machine."""

from __future__ import annotations

from pathlib import Path

from recurly_elt.local.airflow_env import LocalLayout
from recurly_elt.local.fakes import fake_processes, key_file, prepare
from recurly_elt.local.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_fakes_follow_the_destination_connections(tmp_path):
    layout = LocalLayout(root=tmp_path)
    settings = load_settings(ROOT / "airflow_settings.yaml")
    started = fake_processes(layout, settings)
    apis = ("braze", "klaviyo", "activecampaign", "bloomreach", "customersuccessbox")
    assert [p.name for p, _ in started] == [f"fake-{api}" for api in apis]
    for (process, key), api in zip(started, apis):
        conn = settings.connection(f"recurly_{api}")
        assert f"--port {process.meta['port']}" in " ".join(process.argv) and str(process.meta["port"]) in conn.host
        assert key == conn.password and key not in " ".join(process.argv)  # the key goes through a file
        prepare(process, key)
        assert key_file(process).read_text() == key and key_file(process).stat().st_mode & 0o077 == 0


def test_a_destination_pointing_elsewhere_starts_no_fake(tmp_path):
    layout = LocalLayout(root=tmp_path)
    settings = load_settings(ROOT / "airflow_settings.yaml").with_connection(
        "recurly_braze", host="https://rest.iad-01.braze.com")
    others = ["fake-klaviyo", "fake-activecampaign", "fake-bloomreach", "fake-customersuccessbox"]
    assert [p.name for p, _ in fake_processes(layout, settings)] == others
    assert [p.name for p, _ in fake_processes(layout, None)] == ["fake-braze", *others]
