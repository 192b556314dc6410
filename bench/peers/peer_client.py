"""Real-time WebSocket streaming client for the peers; runs INSIDE a peer's venv.

Usage: python peer_client.py JOB.json OUT.json

JOB = {"peer": "wlk"|"wl", "url": "ws://127.0.0.1:PORT", "lanes": [[item, ...], ...],
       "chunk_s": 0.1, "tail_s": 8.0, "final_wait_s": 30.0, "lane_stagger_s": 0.4, "tol_s": 0.25}
item = {"key": str, "path": WAV (16 kHz mono s16), "language": code|null, "ref_ends": [s, ...]}

Lanes run concurrently (one WebSocket each); the items of a lane run one after another.
Each item is streamed like a microphone: 100 ms chunks of s16le PCM, chunk k leaves at
t0 + (k+1)·chunk_s, so the stream clock t = now - t0 is the time the audio was spoken.
After the file, silence keeps coming in real time (a live microphone does not stop) for up to
tail_s seconds, or until the peer's committed output reaches the last reference end
(minus tol_s), or until it shows no partial text 1.5 s after the audio; then end-of-audio is signalled and the client waits up to final_wait_s for the
peer's flush. Every message that changes the peer's output is recorded with its arrival time
on the stream clock; scoring happens outside (run_peers.py).

Protocols (peer versions pinned in requirements-*.txt):
- wlk (WhisperLiveKit, server started with --pcm-input): ws://…/asr?language=…; raw s16le
  bytes; an empty binary frame ends the stream; the server answers {"type": "ready_to_stop"}.
  Messages (mode=full) carry every `lines` entry (committed text with start/end "H:MM:SS.cc")
  and `buffer_transcription` (the uncommitted tail).
- wl (WhisperLive): first a JSON options message (audio_format int16), then raw bytes;
  b"END_OF_AUDIO" ends it and the server closes. Messages carry the last 10 `segments`
  ({start, end, text, completed}) and once a {"language", "language_prob"} message.
"""

import asyncio
import json
import sys
import time
import uuid
import wave

try:
    from websockets.asyncio.client import connect
except ImportError:  # older websockets
    from websockets import connect


def read_pcm(path):
    with wave.open(path, "rb") as w:
        if w.getframerate() != 16000 or w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{path}: need 16 kHz mono 16-bit PCM")
        return w.readframes(w.getnframes())


def hms(value):
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    parts = str(value).split(":")
    secs = 0.0
    for p in parts:
        secs = secs * 60 + float(p)
    return secs


class Recorder:
    """Keeps the recorded events and the committed-output end E on the stream clock."""

    def __init__(self, peer):
        self.peer = peer
        self.events = []
        self.last = None
        self.committed_end = -1.0
        self.wl_transcript = []  # WhisperLive: completed segments, kept as its own client does
        self.done = asyncio.Event()
        self.error = None
        self.meta = {}

    def pending(self):
        """Whether the peer shows uncommitted (partial) text right now."""
        if not self.last:
            return False
        if self.peer == "wlk":
            return bool((self.last.get("buffer") or "").strip())
        return bool(self.last.get("tail") and self.last["tail"][2].strip())

    def on_message(self, t, raw):
        try:
            msg = json.loads(raw)
        except (TypeError, ValueError):
            return
        if self.peer == "wlk":
            self._wlk(t, msg)
        else:
            self._wl(t, msg)

    def _wlk(self, t, msg):
        if msg.get("type") == "ready_to_stop":
            self.done.set()
            return
        if msg.get("type") == "config":
            self.meta["config"] = msg
            return
        if msg.get("error"):
            self.error = f"server error: {msg.get('error')}"
        if "lines" not in msg:
            return
        lines = [[hms(ln.get("start")), hms(ln.get("end")), ln.get("text") or "", ln.get("detected_language")]
                 for ln in msg["lines"] if (ln.get("text") or "").strip()]
        state = {"lines": lines, "buffer": msg.get("buffer_transcription", "")}
        if state != self.last:
            self.last = state
            self.events.append([round(t, 4), state])
            for ln in lines:
                if ln[1] is not None:
                    self.committed_end = max(self.committed_end, ln[1])

    def _wl(self, t, msg):
        if msg.get("message") == "SERVER_READY":
            self.meta["ready"] = msg
            return
        if msg.get("status") in ("WAIT", "ERROR", "WARNING"):
            self.meta.setdefault("status", []).append(msg)
            if msg["status"] in ("WAIT", "ERROR"):
                self.error = f"server {msg['status']}: {msg.get('message')}"
            return
        if msg.get("message") == "DISCONNECT":
            self.error = "server DISCONNECT (max connection time)"
            return
        if "language" in msg and "segments" not in msg:
            self.events.append([round(t, 4), {"language": msg["language"], "prob": msg.get("language_prob")}])
            return
        segs = msg.get("segments")
        if not segs:
            return
        tail = None
        for i, seg in enumerate(segs):  # the logic of whisper_live.client.Client.process_segments
            start, end = float(seg["start"]), float(seg["end"])
            if seg.get("completed"):
                if not self.wl_transcript or start >= self.wl_transcript[-1][1]:
                    self.wl_transcript.append([start, end, seg["text"]])
                    self.committed_end = max(self.committed_end, end)
            elif i == len(segs) - 1:
                tail = [start, end, seg["text"]]
        state = {"completed": list(self.wl_transcript), "tail": tail}
        if state != self.last:
            self.last = state
            self.events.append([round(t, 4), {"completed": [list(x) for x in self.wl_transcript], "tail": tail}])


async def stream_item(job, item):
    peer = job["peer"]
    chunk_s = job.get("chunk_s", 0.1)
    step = int(16000 * chunk_s) * 2
    pcm = read_pcm(item["path"])
    rec = Recorder(peer)
    result = {"key": item["key"], "events": rec.events, "error": None}
    url = job["url"] + ("/asr" if peer == "wlk" else "")
    if peer == "wlk" and item.get("language"):
        url += f"?language={item['language']}"
    t0 = None
    try:
        async with connect(url, max_size=None, open_timeout=30, ping_interval=None) as ws:
            if peer == "wl":
                await ws.send(json.dumps({
                    "uid": str(uuid.uuid4()), "language": item.get("language"), "task": "transcribe",
                    "model": "base", "use_vad": True, "send_last_n_segments": 10,
                    "no_speech_thresh": 0.45, "clip_audio": False, "same_output_threshold": 10,
                    "audio_format": "int16"}))
                # wait for SERVER_READY (or a WAIT / ERROR refusal)
                while "ready" not in rec.meta:
                    raw = await asyncio.wait_for(ws.recv(), timeout=60)
                    rec.on_message(0.0, raw)
                    if rec.error:
                        raise RuntimeError(rec.error)
            else:
                raw = await asyncio.wait_for(ws.recv(), timeout=60)
                rec.on_message(0.0, raw)

            t0 = time.monotonic()

            async def reader():
                try:
                    async for raw in ws:
                        rec.on_message(time.monotonic() - t0, raw)
                        if rec.done.is_set():
                            break
                except Exception as err:  # connection closed by the server etc.
                    if not rec.done.is_set() and peer == "wlk":
                        rec.error = rec.error or f"connection: {err!r}"
                rec.done.set()

            reader_task = asyncio.create_task(reader())
            k = 0
            for i in range(0, len(pcm), step):
                delay = t0 + (k + 1) * chunk_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(pcm[i:i + step])
                k += 1
                if rec.done.is_set():
                    break
            audio_end = time.monotonic() - t0
            target = max(item.get("ref_ends") or [0.0]) - job.get("tol_s", 0.25)
            silence = bytes(step)
            tail_chunks = int(job.get("tail_s", 8.0) / chunk_s)
            for _ in range(tail_chunks):
                now = time.monotonic() - t0
                settled = rec.committed_end > 0 and not rec.pending() and now >= audio_end + 1.5
                if rec.committed_end >= target or settled or rec.done.is_set():
                    break
                delay = t0 + (k + 1) * chunk_s - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await ws.send(silence)
                k += 1
            result["t_audio_end"] = round(audio_end, 4)
            result["t_eos"] = round(time.monotonic() - t0, 4)
            try:
                await ws.send(b"" if peer == "wlk" else b"END_OF_AUDIO")
            except Exception:
                pass
            try:
                await asyncio.wait_for(rec.done.wait(), timeout=job.get("final_wait_s", 30.0))
            except asyncio.TimeoutError:
                result["note"] = "no end-of-stream answer within final_wait_s"
            reader_task.cancel()
    except Exception as err:
        rec.error = rec.error or f"{type(err).__name__}: {err}"
    result["t_end"] = round(time.monotonic() - t0, 4) if t0 else None
    result["error"] = rec.error
    result["meta"] = {k: v for k, v in rec.meta.items() if k != "ready"}
    return result


async def run_lane(job, lane_index, items, out):
    await asyncio.sleep(lane_index * job.get("lane_stagger_s", 0.4))
    for item in items:
        res = await stream_item(job, item)
        res["lane"] = lane_index
        out.append(res)


async def main_async(job):
    out = []
    await asyncio.gather(*(run_lane(job, i, items, out) for i, items in enumerate(job["lanes"])))
    return out


def main():
    job = json.load(open(sys.argv[1], encoding="utf-8"))
    out = asyncio.run(main_async(job))
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
