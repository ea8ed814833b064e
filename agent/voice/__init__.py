"""Listen (frames -> VAD -> Vosk) and speak (pyttsx3), and the loop that joins them.

The engines (webrtcvad, Vosk, pyttsx3) are wrapped once here and imported lazily.
"""
