"""Reading the shared corpus: mbox files and single-message files."""
import glob
import os
import re

from harness import CORPUS, crlf


def mbox_messages(path):
    """(envelope sender, message bytes) for each message of an mbox, with
    the separator removed and one '>' taken off ^>+From lines (mboxrd)."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    pieces = re.split(rb"(?m)^(From [^\n]*)\n", data)
    for sep, body in zip(pieces[1::2], pieces[2::2]):
        if body.endswith(b"\n\n"):
            body = body[:-1]
        elif body.endswith(b"\r\n\r\n"):
            body = body[:-2]
        body = re.sub(rb"(?m)^>(>*From )", rb"\1", body)
        sender = sep.split()[1].decode(errors="replace") if \
            len(sep.split()) > 1 else ""
        out.append((sender, body))
    return out


def list_corpus():
    """Every message of corpus/lists, in a stable order."""
    paths = sorted(glob.glob(os.path.join(CORPUS, "lists", "*.mbox")) +
                   glob.glob(os.path.join(CORPUS, "lists", "*", "*.mbox")))
    msgs = []
    for p in paths:
        for i, (sender, m) in enumerate(mbox_messages(p)):
            msgs.append(("%s#%d" % (os.path.relpath(p, CORPUS), i + 1),
                         sender, m))
    return msgs


def mime_corpus():
    """Every file of corpus/mime (mboxes split), in a stable order."""
    msgs = []
    for p in sorted(glob.glob(os.path.join(CORPUS, "mime", "**", "*"),
                              recursive=True)):
        if not os.path.isfile(p) or p.endswith(".md"):
            continue
        name = os.path.relpath(p, CORPUS)
        with open(p, "rb") as f:
            head = f.read(5)
        if head == b"From ":
            for i, (sender, m) in enumerate(mbox_messages(p)):
                msgs.append(("%s#%d" % (name, i + 1), sender, m))
        else:
            with open(p, "rb") as f:
                msgs.append((name, "", f.read()))
    return msgs


def as_mta_sends(message):
    """What an MTA hands over LMTP: CRLF line ends."""
    return crlf(message)
