"""The board's loop: read -> fingerprint -> fp frame (QoS 1) -> wait for the summary -> callback -> sleep.

How it works:
- Device.step() reads the sensor, merges the config's fixed labels, computes Schema.fingerprint (binning
  and int8 quantisation happen here, in the board's own float width; only labels and integers are sent),
  takes a sequence number (write-ahead on flash) and sends the fp frame. send() publishes directly when
  the link is up and the flash queue is empty; otherwise, or when the publish fails, the frame goes to
  the queue, which is emptied in order whenever the link is up. So frames leave in seq order and a frame
  is dropped only when the bounded queue overflows (counted, reported in the status message).
- It then waits up to summary_timeout_s for the summary whose `re` is that seq. Summaries arrive
  retained on the board's own topic; each is verified (HMAC tag, kind, device) with qis.messages.decode.
  Bad frames are counted (stats "bad_frames") and ignored; summaries for older readings (e.g. the
  retained one replayed on subscribe) are counted as "stale" and not handed on.
- The callback on_summary(summary, device) runs for each new summary (default: log it and blink the
  LED by confidence). report_outcome(label, value) sends an outcome frame for the last reading's seq.
- Between readings the link is serviced (pings, reconnects with backoff, incoming packets, queue
  drain), gc.collect() runs after every reading and the watchdog is fed; with deep_sleep on a real board
  the board disconnects and sleeps with the CPU off instead.
Status frames (kind "status") carry state online/offline, dropped, queued, free heap, the last
seq handed out (no new seq: the will is built before the status it may follow) and the RAM counters.

MemoryError (a fragmented heap on a small board) never ends the loop. Each one caught is counted
("mem_errors", in the stats, the status message and the QIS-STATS line), logged, followed by
gc.collect(), and handled where it happens:
- verifying an incoming summary/error frame: retried once after gc, else that frame is dropped and
  counted ("mem_drops"); the reading was already delivered and a later summary or the retained one
  on the next reconnect replaces it;
- building a reading: that reading is skipped (counted in "bad_readings" too; gc.collect() follows
  and the next reading is taken on time); building an outcome or writing a frame to the flash queue:
  retried once after gc (a second failure of an outcome raises to its caller); a built frame goes to
  the flash queue when it cannot be published, and a queued frame stays on flash until its PUBACK;
- inside the MQTT client (possibly mid-packet): the link drops the connection and reconnects (link.py);
  the unacknowledged QoS-1 frame is published again, the broker re-sends an unacknowledged summary;
- anywhere else in service() or one loop iteration: counted, and the loop goes on.
"""

import gc
from time import ticks_add, ticks_diff, ticks_ms

from qis import messages
from qis.errors import FrameError, QisError
from qis.topics import topic

from qis_device import board
from qis_device.link import Link
from qis_device.store import FrameQueue, SeqCounter

_STATS = ("readings", "bad_readings", "sent", "queued_sends", "summaries", "stale", "missed", "bad_frames",
          "errors_rx", "busy", "timeouts", "outcomes", "mem_errors", "mem_drops")


class Device:
    def __init__(self, cfg, schema, sensor, on_summary=None, state_dir=".", client=None):
        self.cfg = cfg
        self.schema = schema
        self.key = cfg["key"]
        self.dev = cfg["device"]
        site = cfg["site"]
        self.topics = {}
        for kind in ("fp", "outcome", "status", "summary", "error"):
            self.topics[kind] = topic(site, self.dev, kind)
        self.seq = SeqCounter(state_dir, cfg["seq_block"])
        self.queue = FrameQueue(state_dir, cfg["queue_max"])
        self.sensor = sensor
        self.on_summary = on_summary or default_on_summary
        self.stats = {}
        for name in _STATS:
            self.stats[name] = 0
        self.last_summary_re = self.seq.last()  # anything older than this boot is stale
        self.waiting = -1  # seq of the fp whose summary step() waits for
        self.answered = False
        self.last_reading_seq = -1
        self.backoff_ms = 0  # extra wait before the next reading while the gateway answers "busy"
        self.inbox = []  # verified summaries waiting for on_summary (see _on_message)
        self.held = []  # (topic, frame) from the client's callback, verified between client calls
        self.delivering = False
        self.wdt = board.watchdog(cfg["watchdog_ms"])
        self.led = board.led(cfg["led_pin"])
        self.link = Link(cfg, self.topics, self._status_frame, self._on_message, client)
        self.link.feed = self.wdt.feed
        self.link.stats = self.stats  # the link counts the MemoryErrors it turns into a reconnect

    # --- frames ---

    def _status_frame(self, state):
        body = {"v": messages.VERSION, "kind": "status", "dev": self.dev, "seq": max(0, self.seq.last()),
                "state": state, "dropped": self.queue.dropped, "queued": len(self.queue),
                "heap": gc.mem_free(), "mem_errors": self.stats["mem_errors"],
                "mem_drops": self.stats["mem_drops"]}
        return messages.encode_frame(body, self.key)

    def _oom(self, where):
        """A MemoryError was caught in method `where`: count it, free what gc can, say so. `where` is a
        method name (an interned qstr: new message texts cost ~70 bytes of heap each on this port) and
        is printed, not formatted (formatting could fail again)."""
        self.stats["mem_errors"] += 1
        gc.collect()
        print("qis: MemoryError in", where)

    def _retry(self, f, *args):
        """f(*args), once more after gc.collect() when it raised MemoryError (a second one propagates)."""
        try:
            return f(*args)
        except MemoryError:
            self._oom("_retry")
            return f(*args)

    def send(self, kind, frame):
        """Publish a frame (kind b"f" or b"o") now, or keep it on flash until the link is back."""
        if not self.delivering and self.link.up and not len(self.queue):
            if self.link.publish("fp" if kind == b"f" else "outcome", frame):
                self.stats["sent"] += 1
                return True
        # from on_summary (delivering), or not published: on flash; the drain (or the next service) sends it
        self._retry(self.queue.push, kind, frame)
        self.stats["queued_sends"] += 1
        return False if self.delivering else self.drain()

    def drain(self):
        """Publish queued frames oldest first while the link is up; True when the queue is empty."""
        q = self.queue
        while self.link.up:
            entry = q.peek()  # a MemoryError here leaves the frame on flash (service() counts it)
            if entry is None:
                return True
            if not self.link.publish("fp" if entry[0] == b"f" else "outcome", entry[1]):
                return False
            entry = None
            q.pop()
            self.stats["sent"] += 1
            self.wdt.feed()
            gc.collect()  # a known point: a long drain otherwise strands held frames all over the heap
            self._check_held()
            if self.inbox:
                self._deliver()  # between two publishes: summaries of drained readings come in now
        return False

    def _on_message(self, topic_name, msg):
        """The client's callback: it runs inside a read, while a publish waits for its PUBACK or while
        the connection set-up code (qis_device.mqttsetup) is loaded. The frame is only held here and
        verified by _check_held() between client calls, so verifying (HMAC, JSON: ~1.7 KB of
        transient heap) never stacks on those peaks (at 64K they did not fit together). More than
        4 held frames: the oldest is verified at once, none is dropped. msg None: the client had no
        room for the payload and skipped it; counted as dropped."""
        if msg is None:
            self.stats["mem_drops"] += 1
            self._oom("_on_message")
            return
        self.held.append((topic_name, msg))
        if len(self.held) > 4:
            self._check(*self.held.pop(0))

    def _check_held(self):
        while self.held:
            self._check(*self.held.pop(0))

    def _check(self, topic_name, msg):
        """Verify a summary or error frame, count it, and queue a new summary for on_summary."""
        kind = "summary" if topic_name.endswith(b"summary") else "error"
        try:
            body = self._retry(messages.decode, msg, self.key, kind, self.dev)
        except MemoryError:  # twice: this frame is dropped; the next summary (or the retained one) follows
            self.stats["mem_drops"] += 1
            self._oom("_check")
            return
        except FrameError as exc:
            self.stats["bad_frames"] += 1
            board.log("dropped a bad %s frame: %s" % (kind, exc))
            board.unload("qis.errtext")  # the error texts were needed for this message only
            return
        if kind == "error":
            self.stats["errors_rx"] += 1
            board.log("gateway error on seq %d: %s %s" % (body["seq"], body["code"], body["msg"]))
            if body["code"] == "busy":  # shed by an overloaded gateway: no summary will follow
                self.stats["busy"] += 1
                if body["seq"] == self.waiting:
                    self.answered = True
                # the next readings wait one extra interval, doubling up to busy_backoff_max_s (reset by
                # the next summary), like the reconnect backoff
                step = max(1000, int(self.cfg["interval_s"] * 1000))
                self.backoff_ms = min(int(self.cfg["busy_backoff_max_s"] * 1000), max(step, 2 * self.backoff_ms))
            return
        re = body["re"]
        if re <= self.last_summary_re or re > self.seq.last():
            self.stats["stale"] += 1
            return
        self.last_summary_re = re
        self.stats["summaries"] += 1
        self.backoff_ms = 0
        if re == self.waiting:
            self.answered = True
        # Handed on later, from service(): this runs inside the client's read, possibly while a
        # publish waits for its PUBACK, and a callback that publishes (report_outcome) must not
        # re-enter the client or the queue drain.
        if len(self.inbox) >= 4:  # a burst (answers to a drained queue): the oldest is not handed on
            self.inbox.pop(0)
            self.stats["missed"] += 1
        self.inbox.append(body)

    def _deliver(self):
        """Hand queued summaries to on_summary, at a point where no publish or pop is in progress.
        Frames the callback sends (report_outcome) are only queued meanwhile; the drain sends them."""
        if self.delivering:
            return
        self.delivering = True
        try:
            while self.inbox:
                body = self.inbox.pop(0)
                try:
                    self.on_summary(body, self)
                except Exception as exc:  # the application's callback must not stop the loop
                    if isinstance(exc, MemoryError):
                        self._oom("on_summary")
                    board.log("on_summary failed: %r" % (exc,))
        finally:
            self.delivering = False

    # --- the loop ---

    def service(self, timeout_ms):
        """One bounded step of link upkeep; empties the queue after a reconnect."""
        was_up = self.link.up
        try:
            self.link.service(timeout_ms)
            self._check_held()
            if self.link.up and (not was_up or len(self.queue)):
                self.drain()
            if self.inbox:
                self._deliver()
        except MemoryError:  # queued frames stay on flash; the next service goes on from there
            self._oom("service")

    def wait_until(self, deadline, stop_when_answered=False):
        while True:
            self._check_held()  # the answer may have come in while the fp waited for its PUBACK
            left = ticks_diff(deadline, ticks_ms())
            if left <= 0 or (stop_when_answered and self.answered):
                return
            self.service(min(left, 1000))
            self.wdt.feed()

    def step(self):
        """One reading; returns its seq, or -1 when the sensor or schema rejected the reading."""
        try:
            reading = self.sensor()
            fixed = self.cfg["fixed"]
            for name in fixed:
                reading[name] = fixed[name]
            fp = self.schema.fingerprint(reading)
            seq = self.seq.take()
            frame = messages.encode_fp(self.dev, seq, fp, self.key)
        except (QisError, OSError, ValueError, TypeError, MemoryError) as exc:  # QisError: schema or frame
            self.stats["bad_readings"] += 1
            if isinstance(exc, MemoryError):  # skipped; the loop's gc.collect() follows, then the next one
                self._oom("step")
                return -1
            board.log("reading rejected: %r" % (exc,))
            board.unload("qis.errtext")
            return -1
        fp = reading = None
        self.stats["readings"] += 1
        self.last_reading_seq = seq
        self.waiting = seq
        self.answered = False
        sent = self.send(b"f", frame)
        frame = None
        if sent and self.cfg["summary_timeout_s"] > 0:
            self.wait_until(ticks_add(ticks_ms(), int(self.cfg["summary_timeout_s"] * 1000)), True)
            if not self.answered:
                self.stats["timeouts"] += 1
        if self.inbox:
            self._deliver()
        self.waiting = -1
        return seq

    def report_outcome(self, label, value=None, weight=None, reading_seq=None):
        """Send an outcome frame explaining a reading (default: the last one); returns the frame's seq."""
        if reading_seq is None:
            reading_seq = self.last_reading_seq
        if reading_seq < 0:
            raise ValueError("report_outcome: no reading yet to tie the outcome to")
        seq = self.seq.take()
        frame = self._retry(messages.encode_outcome, self.dev, seq, reading_seq, label, self.key, value, weight)
        self.stats["outcomes"] += 1
        self.send(b"o", frame)
        return seq

    def run(self, readings=None):
        """Take `readings` readings (None: forever), one every interval_s."""
        interval_ms = int(self.cfg["interval_s"] * 1000)
        every = self.cfg.get("heap_log_every", 0)
        n = 0
        start = ticks_ms()
        self.service(0)
        while readings is None or n < readings:
            try:  # a MemoryError anywhere in one period is counted and the loop goes on (frames on flash)
                if n:  # until the next reading is due
                    # a busy gateway: later, with jitter so boards told "busy" together do not return together
                    due_ms = interval_ms
                    if self.backoff_ms:
                        due_ms += self.backoff_ms + ticks_ms() % (self.backoff_ms // 4 + 1)
                    if self.cfg["deep_sleep"] and not board.UNIX:
                        self.link.close()
                        from qis_device.periph import deep_sleep

                        deep_sleep(max(0, due_ms - ticks_diff(ticks_ms(), start)))
                    self.wait_until(ticks_add(start, due_ms))
                start = ticks_ms()
                n += 1
                self.step()
                gc.collect()
                self.wdt.feed()
                if every and n % every == 0:
                    print("QIS-HEAP %d %d" % (n, gc.mem_free()))
            except MemoryError:
                self._oom("run")

    def finish(self, drain_ms=2000):
        """Try to empty the queue for up to drain_ms, then say goodbye (status offline) and disconnect."""
        deadline = ticks_add(ticks_ms(), drain_ms)
        while len(self.queue) and ticks_diff(deadline, ticks_ms()) > 0:
            self.service(min(200, max(1, ticks_diff(deadline, ticks_ms()))))
        self.link.close()


def default_on_summary(summary, device):
    top = summary["top"]
    board.log("summary re=%d n=%d conf=%d level=%d top=%s" % (
        summary["re"], summary["n"], summary["conf"], summary["level"], top[0][0] if top else "-"))
    device.led.blink_confidence(summary["conf"])
