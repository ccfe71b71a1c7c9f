"""The script registry: every Lua file registered by it, keys named by keys.py, ranks from otp.delivery."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from otp import delivery
from otp.storage import keys as keyspace
from otp.storage import scripts
from otp.storage.store import Store

LUA = resources.files("otp.storage") / "lua"
KEY_ARGUMENT = re.compile(
    r"^(K\.\w+( \.\. \w+)?|KEYS\[1\]|key|jkey|log|counter|failed_key|approving|A\.wake\[1\]"
    r"|(vkey|numkey|failedkey|approvingkey|eventkey|eventownerkey)\(.*)$"
)
LUA_FILES = sorted(p.name.removesuffix(".lua") for p in LUA.iterdir() if p.name.endswith(".lua"))


def test_every_lua_file_is_a_declared_script() -> None:
    declared = set(scripts.SCRIPTS) | set(scripts.DEV_SCRIPTS)
    assert set(LUA_FILES) - {"lib"} == declared


@pytest.mark.parametrize("name", LUA_FILES)
def test_no_lua_file_spells_a_key_name(name: str) -> None:
    """Every key a script touches arrives in KEYS (whole, or as a prefix built by keys.py)."""
    source = (LUA / f"{name}.lua").read_text()
    code = "\n".join(line.split("--", 1)[0] for line in source.splitlines())
    assert "TAG" not in code
    assert "otp:" not in code
    # Each command's key is a name from K (or K's prefix and an id), lib.lua's builders over K, or
    # a local the script assigned from one of them.
    for command, key in re.findall(r"redis\.call\('(\w+)',\s*([^,)]+)", code):
        assert KEY_ARGUMENT.match(key.strip()), f"{name}.lua: {command} {key}"


def test_lib_lua_holds_no_copy_of_the_delivery_ranks() -> None:
    lib = (LUA / "lib.lua").read_text()
    assert "delivered = " not in lib and "local DELIVERY_RANK" not in lib
    source = scripts.load_script_source("delivery")
    for state, rank in delivery.RANK.items():
        assert f"['{state}'] = {rank}" in source
    final = source.split("local FINAL = ", 1)[1].split("\n", 1)[0]
    assert set(re.findall(r"\['(\w+)'\] = true", final)) == delivery.FINAL


def test_a_partitions_script_keys_share_its_slot() -> None:
    for partition in range(16):
        named = keyspace.partition_script_keys(partition, 1_764_633_600_000)
        assert tuple(named) == scripts.PARTITION_KEYS
        vid = keyspace.new_verification_id(partition, 16)
        assert named["verifications"] + vid == keyspace.verification(partition, vid)
        assert named["jobs"] + f"{vid}:1" == keyspace.job(partition, f"{vid}:1")
        assert named["failed"] + "k:+15017122661" == keyspace.failed_checks(partition, "k", "+15017122661")
        assert len({key_slot(k.encode()) for k in named.values()}) == 1


def test_keys_go_in_the_declared_order_and_none_is_missing() -> None:
    keys = {name: f"otp:{{p00}}:{name}" for name in scripts.PARTITION_KEYS}
    assert scripts.ordered_keys("claim", keys) == [keys[name] for name in scripts.PARTITION_KEYS]
    with pytest.raises(ValueError, match=r"claim\.lua takes KEYS"):
        scripts.ordered_keys("claim", {**keys, "extra": "otp:{p00}:x"})
    with pytest.raises(ValueError, match=r"fraud\.lua takes KEYS"):
        scripts.ordered_keys("fraud", ["a", "b", "c"])


def test_fraud_keys_are_in_the_scopes_slot() -> None:
    keys = keyspace.fraud_keys("pfx", "+1501712")
    assert len(keys) == len(scripts.SCRIPTS["fraud"].keys or ())
    assert keys[2] == keyspace.known_good("+1501712")
    assert len({key_slot(k.encode()) for k in keys}) == 1


async def test_a_store_registers_each_source_once_per_process(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        first, second = Store(client, partitions=4), Store(client, partitions=4)
        assert first.scripts.script("start").script is second.scripts.script("start").script
        assert "dev_fill_audit" not in first.scripts._scripts  # devtools scripts only on demand
    finally:
        await client.aclose()
