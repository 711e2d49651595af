"""State on flash that must survive a reset: the sequence counter and the store-and-forward queue.

How it works:
- SeqCounter: sequence numbers are reserved in blocks, write-ahead. The file `seq` holds the first
  number NOT yet reserved; before handing out a number at or beyond it, the counter writes the end of
  the next block (temp file, then os.rename: atomic on LittleFS and POSIX). After a reset the board
  starts at the stored value, so a seq is never reused; at most one block of numbers is skipped.
  One flash write per `block` readings.
- FrameQueue: one file per queued frame, `q/<index>` (zero-padded, increasing), holding a kind byte
  (b"f" fp, b"o" outcome) followed by the frame exactly as it will be published. Append = write a temp
  file and rename it into place; pop = unlink the oldest. Only the indices (head, tail) live in RAM,
  found once at start-up with os.ilistdir, so the queue costs no heap however long it is. When full,
  the oldest file is removed and `dropped` (kept in `q/dropped`) goes up; the board reports it in its
  next status message. A torn temp file or an unreadable entry is removed and counted as dropped.
"""

import os

_WIDTH = 10


def _write_atomic(path, data, head=None):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        if head is not None:
            f.write(head)  # written in two pieces rather than copied into one (board heap)
        f.write(data)
    os.rename(tmp, path)


def _read_int(path, default):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return default


class SeqCounter:
    def __init__(self, state_dir, block=32):
        self.path = state_dir + "/seq"
        self.block = block
        self.next_seq = _read_int(self.path, 0)
        self.reserved = self.next_seq  # numbers below this are safe to hand out

    def take(self):
        """The next sequence number; reserves a new block on flash first when needed."""
        seq = self.next_seq
        if seq >= self.reserved:
            self.reserved = seq + self.block
            _write_atomic(self.path, b"%d" % self.reserved)
        self.next_seq = seq + 1
        return seq

    def last(self):
        """The last number handed out (-1 before the first)."""
        return self.next_seq - 1


class FrameQueue:
    def __init__(self, state_dir, max_items):
        self.dir = state_dir + "/q"
        self.max_items = max_items  # the directory exists (start.py makes it)
        self.dropped = _read_int(self.dir + "/dropped", 0)
        head = -1
        tail = -1
        torn = 0
        for entry in os.ilistdir(self.dir):
            name = entry[0]
            if name.endswith(".tmp"):
                os.remove(self.dir + "/" + name)
                torn += 1
                continue
            if not name.isdigit():
                continue
            index = int(name)
            if head < 0 or index < head:
                head = index
            if index > tail:
                tail = index
        self.head = head if head >= 0 else 0
        self.tail = tail + 1 if tail >= 0 else 0  # next index to write
        if torn:
            self._count_drop(torn)
        while len(self) > max_items:
            self._drop_oldest()

    def __len__(self):
        return self.tail - self.head

    def _name(self, index):
        s = str(index)
        return self.dir + "/" + "0" * (_WIDTH - len(s)) + s

    def _count_drop(self, n):
        self.dropped += n
        _write_atomic(self.dir + "/dropped", b"%d" % self.dropped)

    def _drop_oldest(self):
        try:
            os.remove(self._name(self.head))
        except OSError:
            pass
        self.head += 1
        self._count_drop(1)

    def push(self, kind, frame):
        """Append one frame (kind: b"f" or b"o"); drops the oldest first when the queue is full."""
        while len(self) >= self.max_items:
            self._drop_oldest()
        _write_atomic(self._name(self.tail), frame, kind)
        self.tail += 1

    def peek(self):
        """(kind, frame) of the oldest entry, or None when empty; frame is a memoryview of the file's
        bytes (no copy of a ~300-byte frame per publish). Unreadable entries are dropped."""
        while self.head < self.tail:
            try:
                with open(self._name(self.head), "rb") as f:
                    data = f.read()
            except OSError:
                data = b""
            if len(data) > 1 and data[:1] in (b"f", b"o"):
                return data[:1], memoryview(data)[1:]
            self._drop_oldest()
        return None

    def pop(self):
        """Remove the oldest entry (after its PUBACK)."""
        if self.head < self.tail:
            try:
                os.remove(self._name(self.head))
            except OSError:
                pass
            self.head += 1
        if self.head == self.tail:
            # empty: restart the numbering so names never grow without bound
            self.head = self.tail = 0
