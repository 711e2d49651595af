"""Iterative lookup state machine (Kademlia paper §2.3) with alpha requests kept in flight.

How it works:
- The shortlist holds every candidate heard of, sorted by XOR distance to the target. A candidate is
  NEW, INFLIGHT, ANSWERED or FAILED. ``next_requests()`` tops the number in flight back up to ``alpha``
  from the NEW candidates among the ``k`` closest non-failed ones: no lock-step rounds, so a slow or dead
  peer holds one slot only until its own (adaptive) timeout, while the others keep going.
- A candidate's ``depth`` is the length of the request chain that led to it: contacts from our own
  table have depth 1, contacts returned by a depth-d answer have depth d + 1. The hop count reported for
  a lookup is the depth of the first answer that held values (get) or the deepest answer among the k
  closest (find node / put).
- A request whose first timeout fired is STALLED: the node retries it, but it no longer holds one of the
  alpha slots, so the lookup asks the next candidate at once (a dead peer delays the lookup by one
  adaptive timeout, not by timeout + retries). It still counts as unresolved for ``finished``.
- The lookup is ``finished`` when the k closest non-failed candidates have all answered (or no candidate
  is left to ask). Retries and timeouts are the node's business; it reports ``answered`` / ``stalled`` /
  ``failed`` / ``timed_out``.
- ``reask`` (a put's node lookup: 1): a candidate whose request timed out (after the RPC layer's own
  retries) is asked again that many times before it counts as failed. Under message loss a close node
  whose answers were lost would otherwise miss the STORE (issue 18 point 14: at 10% loss, 3.6% of the
  closest nodes missed each value that way and a get could meet two holders lacking the same value).
"""

from __future__ import annotations

from bisect import insort

from .routing import Contact

NEW, INFLIGHT, ANSWERED, FAILED, STALLED = 0, 1, 2, 3, 4


class Candidate:
    __slots__ = ("contact", "dist", "state", "depth", "token", "reasked")

    def __init__(self, contact: Contact, dist: int, depth: int) -> None:
        self.contact = contact
        self.dist = dist
        self.state = NEW
        self.depth = depth
        self.token = b""
        self.reasked = 0


class Lookup:
    __slots__ = ("target_int", "k", "alpha", "exclude_int", "by_id", "order", "inflight", "requests", "failures",
                 "reask")

    def __init__(self, target_int: int, k: int, alpha: int, seeds: list[Contact], exclude_int: int,
                 reask: int = 0) -> None:
        self.reask = reask
        self.target_int = target_int
        self.k = k
        self.alpha = alpha
        self.exclude_int = exclude_int  # our own id: never a candidate
        self.by_id: dict[int, Candidate] = {}
        self.order: list[tuple[int, int]] = []  # (distance, id) sorted
        self.inflight = 0
        self.requests = 0
        self.failures = 0
        for c in seeds:
            self.offer(c, 1)

    def offer(self, contact: Contact, depth: int) -> None:
        """A contact heard of at ``depth``; kept at the smallest depth it was heard at."""
        id_int = contact.id_int
        if id_int == self.exclude_int:
            return
        cand = self.by_id.get(id_int)
        if cand is not None:
            if depth < cand.depth and cand.state == NEW:
                cand.depth = depth
            return
        dist = id_int ^ self.target_int
        self.by_id[id_int] = Candidate(contact, dist, depth)
        insort(self.order, (dist, id_int))

    def next_requests(self) -> list[Candidate]:
        """Candidates to ask now (marked INFLIGHT), keeping at most ``alpha`` in flight."""
        room = self.alpha - self.inflight
        if room <= 0:
            return []
        out: list[Candidate] = []
        seen = 0
        by_id = self.by_id
        for _, id_int in self.order:
            cand = by_id[id_int]
            st = cand.state
            if st == FAILED:
                continue
            seen += 1
            if st == NEW:
                cand.state = INFLIGHT
                out.append(cand)
                if len(out) >= room:
                    break
            if seen >= self.k:
                break
        self.inflight += len(out)
        self.requests += len(out)
        return out

    def stalled(self, cand: Candidate) -> None:
        if cand.state == INFLIGHT:
            self.inflight -= 1
            cand.state = STALLED

    def answered(self, cand: Candidate, contacts: tuple[Contact, ...] | list[Contact], token: bytes = b"") -> None:
        if cand.state == INFLIGHT:
            self.inflight -= 1
        cand.state = ANSWERED
        cand.token = token
        depth = cand.depth + 1
        # offer() inlined (the simulator's hottest loop). Candidates beyond the 3k closest known (not
        # counting failed ones) are dropped: the lookup could reach them only after 2k more failures.
        by_id = self.by_id
        order = self.order
        target = self.target_int
        exclude = self.exclude_int
        horizon = 3 * self.k + self.failures
        limit = order[horizon - 1][0] if len(order) >= horizon else None
        for c in contacts:
            id_int = c.id_int
            known = by_id.get(id_int)
            if known is None:
                if id_int == exclude:
                    continue
                dist = id_int ^ target
                if limit is not None and dist > limit:
                    continue
                by_id[id_int] = Candidate(c, dist, depth)
                insort(order, (dist, id_int))
                if len(order) >= horizon:
                    limit = order[horizon - 1][0]
            elif depth < known.depth and known.state == NEW:
                known.depth = depth

    def failed(self, cand: Candidate) -> None:
        if cand.state == INFLIGHT:
            self.inflight -= 1
        if cand.state != FAILED:
            self.failures += 1
        cand.state = FAILED

    def timed_out(self, cand: Candidate) -> None:
        """The request (with its retries) got no answer: ask again while ``reask`` allows, else failed."""
        if cand.reasked < self.reask and cand.state in (INFLIGHT, STALLED):
            cand.reasked += 1
            if cand.state == INFLIGHT:
                self.inflight -= 1
            cand.state = NEW
            return
        self.failed(cand)

    def finished(self) -> bool:
        """The k closest non-failed candidates have all answered (or none is left to ask)."""
        seen = 0
        by_id = self.by_id
        for _, id_int in self.order:
            st = by_id[id_int].state
            if st == FAILED:
                continue
            if st != ANSWERED:
                return False
            seen += 1
            if seen >= self.k:
                return True
        return True

    def closest_answered(self, count: int) -> list[Candidate]:
        out = []
        for _, id_int in self.order:
            cand = self.by_id[id_int]
            if cand.state == ANSWERED:
                out.append(cand)
                if len(out) >= count:
                    break
        return out
