"""Starts a WhisperLive 0.10.0 server (faster_whisper backend) on a local CTranslate2 model.

Runs inside the WhisperLive venv (.peers/wl). The whisper-live wheel ships no server script
(run_server.py lives only in its git repository), so this is the equivalent of
`python run_server.py --backend faster_whisper -fw MODEL_DIR --port P` bound to 127.0.0.1.
No hub access: the model is a local directory (a CT2 dir is loaded as is), and the Silero
VAD file WhisperLive would wget for its TensorRT path is pointed at a local copy.
"""

import argparse
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--model", required=True, help="CTranslate2 Whisper model directory")
    ap.add_argument("--vad-onnx", default=None, help="local Silero VAD onnx (TensorRT path only)")
    ap.add_argument("--max-clients", type=int, default=4)
    ap.add_argument("--max-connection-time", type=int, default=3600)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    if args.vad_onnx:
        from whisper_live import vad

        vad.VoiceActivityDetection.download = staticmethod(lambda *a, **k: args.vad_onnx)

    from whisper_live.server import TranscriptionServer

    TranscriptionServer().run(
        args.host,
        port=args.port,
        backend="faster_whisper",
        faster_whisper_custom_model_path=args.model,
        single_model=True,  # one shared model instance, as run_server.py does with -fw
        max_clients=args.max_clients,
        max_connection_time=args.max_connection_time,
    )


if __name__ == "__main__":
    main()
