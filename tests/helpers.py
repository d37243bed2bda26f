import json


def write_chunks(path, n=4, words=90):
    vocab = ("the river carries sand to the sea where waves sort grains by size and slowly build "
             "long beaches that shift with each storm season").split()
    with open(path, "w") as fh:
        for i in range(n):
            text = " ".join(vocab[(i * 3 + j) % len(vocab)] for j in range(words))
            fh.write(json.dumps({"id": f"c{i}", "text": text, "source": f"s{i % 2}"}) + "\n")
    return path


def write_interleaved(path, n=12, sentences=8):
    """Interleaved-thinking rows (``text`` with <think> spans and the ``original``): plain
    sentences with a short thought after every other one."""
    vocab = ("the river carries sand to the sea where waves sort grains by size and slowly build "
             "long beaches that shift with each storm season").split()
    thoughts = ["next comes what the waves do", "this links back to the sand", "a cause is coming"]
    with open(path, "w") as fh:
        for i in range(n):
            plain, inter = [], []
            for j in range(sentences):
                words = " ".join(vocab[(i + j * 5 + k) % len(vocab)] for k in range(9))
                sentence = words[0].upper() + words[1:] + "."
                plain.append(sentence)
                inter.append(sentence)
                if j % 2 == 0 and j < sentences - 1:
                    inter.append(f"<think>{thoughts[(i + j) % len(thoughts)]}</think>")
            fh.write(json.dumps({"id": f"r{i}", "text": " ".join(inter), "original": " ".join(plain),
                                 "source": f"s{i % 3}"}) + "\n")
    return path
