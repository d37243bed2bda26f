import json


def write_chunks(path, n=4, words=90):
    vocab = ("the river carries sand to the sea where waves sort grains by size and slowly build "
             "long beaches that shift with each storm season").split()
    with open(path, "w") as fh:
        for i in range(n):
            text = " ".join(vocab[(i * 3 + j) % len(vocab)] for j in range(words))
            fh.write(json.dumps({"id": f"c{i}", "text": text, "source": f"s{i % 2}"}) + "\n")
    return path
