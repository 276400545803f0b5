"""The 188 MagnaTagATune tags, in the published column order of `annotations_final.csv` (between `clip_id`
and `mp3_path`). A file's own header is the authority on its columns; this order is used where no annotations
are at hand (prompts built from a tag set) and to say which published tags a file lacks."""

from __future__ import annotations

MTAT_TAGS: tuple[str, ...] = (
    "no voice", "singer", "duet", "plucking", "hard rock", "world", "bongos", "harpsichord", "female singing",
    "clasical", "sitar", "chorus", "female opera", "male vocal", "vocals", "clarinet", "heavy", "silence", "beats",
    "men", "woodwind", "funky", "no strings", "chimes", "foreign", "no piano", "horns", "classical", "female",
    "no voices", "soft rock", "eerie", "spacey", "jazz", "guitar", "quiet", "no beat", "banjo", "electric", "solo",
    "violins", "folk", "female voice", "wind", "happy", "ambient", "new age", "synth", "funk", "no singing",
    "middle eastern", "trumpet", "percussion", "drum", "airy", "voice", "repetitive", "birds", "space", "strings",
    "bass", "harpsicord", "medieval", "male voice", "girl", "keyboard", "acoustic", "loud", "classic", "string",
    "drums", "electronic", "not classical", "chanting", "no violin", "not rock", "no guitar", "organ", "no vocal",
    "talking", "choral", "weird", "opera", "soprano", "fast", "acoustic guitar", "electric guitar", "male singer",
    "man singing", "classical guitar", "country", "violin", "electro", "reggae", "tribal", "dark", "male opera",
    "no vocals", "irish", "electronica", "horn", "operatic", "arabic", "lol", "low", "instrumental", "trance",
    "chant", "strange", "drone", "synthesizer", "heavy metal", "modern", "disco", "bells", "man", "deep",
    "fast beat", "industrial", "hard", "harp", "no flute", "jungle", "pop", "lute", "female vocal", "oboe",
    "mellow", "orchestral", "viola", "light", "echo", "piano", "celtic", "male vocals", "orchestra", "eastern",
    "old", "flutes", "punk", "spanish", "sad", "sax", "slow", "male", "blues", "vocal", "indian", "no singer",
    "scary", "india", "woman", "woman singing", "rock", "dance", "piano solo", "guitars", "no drums", "jazzy",
    "singing", "cello", "calm", "female vocals", "voices", "different", "techno", "clapping", "house", "monks",
    "flute", "not opera", "not english", "oriental", "beat", "upbeat", "soft", "noise", "choir", "female singer",
    "rap", "metal", "hip hop", "quick", "water", "baroque", "women", "fiddle", "english",
)
