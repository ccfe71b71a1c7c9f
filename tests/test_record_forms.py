"""What a pending verification keeps in Redis (issue 18: bytes per pending verification), and that
records and SMS jobs written by the previous version, still pending at an upgrade, send and
verify as before."""

from __future__ import annotations

from conftest import Service, hash_fields

from otp.storage import keys as keyspace

TO = "+15017122661"


def _keys(vid: str) -> tuple[str, str]:
    partition = keyspace.partition_of_id(vid, 16)
    return keyspace.verification(partition, vid), keyspace.job(partition, f"{vid}:1")


async def test_a_pending_sms_job_holds_the_sealed_code_and_no_number(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    record_key, job_key = _keys(vid)
    record, job = await hash_fields(service.redis, record_key), await hash_fields(service.redis, job_key)
    # The id is the key's, the channel the default: neither is stored.
    assert not {b"id", b"ch"} & set(record)
    assert set(job) == {b"code"}
    assert TO.encode() not in job[b"code"]
    fetched = (await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())).json()
    assert (fetched["id"], fetched["channel"]) == (vid, "sms")


async def test_a_resend_in_another_locale_keeps_that_locale_on_its_own_job(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    await service.deliver()
    await service.start(TO, locale="fr")
    partition = keyspace.partition_of_id(vid, 16)
    job = await hash_fields(service.redis, keyspace.job(partition, f"{vid}:2"))
    assert job[b"loc"] == b"fr"
    await service.deliver()
    first, resent = service.sender.messages
    assert "est votre code" in resent.body and "est votre code" not in first.body


async def test_a_verification_and_job_of_the_previous_version_still_send_and_verify(service: Service) -> None:
    vid = (await service.start(TO)).json()["id"]
    record_key, job_key = _keys(vid)
    record = await hash_fields(service.redis, record_key)
    # The previous version's forms: the record held its id, channel and locale; the job the
    # verification, the send, the number, the locale, the expiry, the tries and the app name.
    await service.redis.hset(record_key, mapping={"id": vid, "ch": "sms", "loc": ""})
    await service.redis.hset(
        job_key,
        mapping={"vid": vid, "n": 1, "to": TO, "loc": "", "x": record[b"x"], "tries": 0, "app": ""},
    )
    code = await service.last_code()
    assert [m.to for m in service.sender.messages] == [TO]
    checked = await service.check(code, id=vid)
    assert checked.status_code == 200 and checked.json()["status"] == "approved"
    assert checked.json()["id"] == vid
