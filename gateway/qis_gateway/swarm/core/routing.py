"""Kademlia routing table: 256 k-buckets over the XOR metric (Kademlia paper §2.2, §2.4; BEP 5).

How it works:
- A contact with id ``c`` falls in bucket ``i = bit_length(c XOR own) - 1`` (bucket 255 = the half of the
  keyspace farthest from us). Buckets are created lazily (a dict of lists) so a table holds only the
  ~log2(N/k) buckets that have contacts; each list is ordered least-recently-seen first.
- Only *proven* contacts enter (the node checks the id signature first). ``add_proven`` moves a known
  contact to the tail; adds a new one while the bucket has room; when the bucket is full the newcomer
  goes to the bucket's replacement cache and the table returns the least-recently-seen contact for the
  node to PING (ping-before-evict, at most once per ``evict_ping_interval_s`` per bucket). The node
  reports that ping's outcome: an answer moves the old contact to the tail (``add_proven``), repeated
  failures (``record_failure``) evict it and promote the newest replacement.
- ``closest(target, n)`` is exact: it visits buckets in XOR order (see its docstring), sorts within each,
  and stops once it has n. Tested against brute force (the PyPI ``kademlia`` traverser bug, its issue #28).
- Memory: ``Contact`` has three slots and is shared between tables in the simulator; per-table extras
  (failures, replacement caches, ping times) are created only when needed.
"""

from __future__ import annotations

Address = tuple[str, int]


class Contact:
    """A node we can reach: its id (bytes and int) and UDP address. Treated as immutable."""

    __slots__ = ("node_id", "id_int", "addr")

    def __init__(self, node_id: bytes, addr: Address) -> None:
        self.node_id = node_id
        self.id_int = int.from_bytes(node_id, "big")
        self.addr = addr

    def __repr__(self) -> str:
        return "Contact(%s…, %s:%d)" % (self.node_id.hex()[:12], self.addr[0], self.addr[1])


class RoutingTable:
    __slots__ = ("own_int", "k", "buckets", "_size", "_replacements", "_failures", "_evict_ping_s",
                 "replacement_size", "evict_ping_interval_s", "max_failures", "bucket_used_s")

    def __init__(self, own_id: bytes, k: int = 20, replacement_size: int = 8,
                 evict_ping_interval_s: float = 60.0, max_failures: int = 2) -> None:
        self.own_int = int.from_bytes(own_id, "big")
        self.k = k
        self.buckets: dict[int, list[Contact]] = {}
        self._size = 0
        self._replacements: dict[int, list[Contact]] | None = None
        self._failures: dict[int, int] | None = None
        self._evict_ping_s: dict[int, float] | None = None
        self.replacement_size = replacement_size
        self.evict_ping_interval_s = evict_ping_interval_s
        self.max_failures = max_failures
        self.bucket_used_s: dict[int, float] | None = None

    def __len__(self) -> int:
        return self._size

    def bucket_index(self, id_int: int) -> int:
        return (id_int ^ self.own_int).bit_length() - 1

    def contacts(self) -> list[Contact]:
        return [c for b in self.buckets.values() for c in b]

    def find(self, id_int: int) -> Contact | None:
        bucket = self.buckets.get((id_int ^ self.own_int).bit_length() - 1)
        if bucket:
            for c in bucket:
                if c.id_int == id_int:
                    return c
        return None

    def touch(self, id_int: int, addr: Address) -> bool:
        """Move a known contact at ``addr`` to its bucket's tail; False if not known at that address."""
        bucket = self.buckets.get((id_int ^ self.own_int).bit_length() - 1)
        if bucket:
            for pos, c in enumerate(bucket):
                if c.id_int == id_int:
                    if c.addr != addr:
                        return False
                    if pos != len(bucket) - 1:
                        del bucket[pos]
                        bucket.append(c)
                    if self._failures:
                        self._failures.pop(id_int, None)
                    return True
        return False

    def has_room(self, id_int: int) -> bool:
        """True when a contact with this id would be added (or is present) without eviction."""
        i = (id_int ^ self.own_int).bit_length() - 1
        if i < 0:
            return False
        bucket = self.buckets.get(i)
        if bucket is None or len(bucket) < self.k:
            return True
        for c in bucket:
            if c.id_int == id_int:
                return True
        return False

    def add_proven(self, contact: Contact, now_s: float) -> Contact | None:
        """Record a proven contact as just seen; returns a contact to ping before eviction, or None."""
        id_int = contact.id_int
        i = (id_int ^ self.own_int).bit_length() - 1
        if i < 0:
            return None
        bucket = self.buckets.get(i)
        if bucket is None:
            self.buckets[i] = [contact]
            self._size += 1
            return None
        for pos, c in enumerate(bucket):
            if c.id_int == id_int:
                del bucket[pos]
                bucket.append(contact)  # newest object: a node that moved is reachable at its new addr
                if self._failures:
                    self._failures.pop(id_int, None)
                return None
        if len(bucket) < self.k:
            bucket.append(contact)
            self._size += 1
            return None
        self._remember_replacement(i, contact)
        if self._evict_ping_s is None:
            self._evict_ping_s = {}
        last = self._evict_ping_s.get(i)
        if last is not None and now_s - last < self.evict_ping_interval_s:
            return None
        self._evict_ping_s[i] = now_s
        return bucket[0]

    def _remember_replacement(self, i: int, contact: Contact) -> None:
        if self.replacement_size <= 0:
            return
        if self._replacements is None:
            self._replacements = {}
        cache = self._replacements.setdefault(i, [])
        for pos, c in enumerate(cache):
            if c.id_int == contact.id_int:
                del cache[pos]
                break
        cache.append(contact)
        if len(cache) > self.replacement_size:
            del cache[0]

    def record_success(self, id_int: int) -> None:
        if self._failures:
            self._failures.pop(id_int, None)

    def record_failure(self, id_int: int) -> bool:
        """An RPC to this contact failed (after retries); True when that evicted it."""
        if self.find(id_int) is None:
            return False
        if self._failures is None:
            self._failures = {}
        n = self._failures.get(id_int, 0) + 1
        if n < self.max_failures:
            self._failures[id_int] = n
            return False
        self.remove(id_int)
        return True

    def remove(self, id_int: int) -> bool:
        """Drop a contact (failure or LEAVE); the newest replacement takes its place."""
        i = (id_int ^ self.own_int).bit_length() - 1
        bucket = self.buckets.get(i)
        if not bucket:
            return False
        for pos, c in enumerate(bucket):
            if c.id_int == id_int:
                del bucket[pos]
                self._size -= 1
                break
        else:
            return False
        if self._failures:
            self._failures.pop(id_int, None)
        cache = self._replacements.get(i) if self._replacements else None
        if cache:
            bucket.append(cache.pop())
            self._size += 1
        if not bucket:
            del self.buckets[i]
        return True

    def closest(self, target_int: int, count: int, exclude_int: int | None = None) -> list[Contact]:
        """The ``count`` contacts closest to ``target_int`` by XOR, nearest first (exact).

        With b = own XOR target and i = the target's bucket: bucket i holds the closest contacts. A lower
        bucket j < i is closer than all buckets below it when bit j of b is 1 (its contacts clear that
        bit), else farther than all of them; higher buckets j > i come last in increasing j. So buckets
        are visited in that order and only as many as needed are sorted."""
        buckets = self.buckets
        b = target_int ^ self.own_int
        i = b.bit_length() - 1
        need = count + (1 if exclude_int is not None else 0)
        # Collect whole buckets in that order until there are enough, then sort: every contact of an
        # earlier bucket is closer than every contact of a later one, so the buckets before the last one
        # taken (``picked[:cut]``) are sorted together and only the nearest few of the last are kept.
        picked: list[Contact] = []
        cut = 0
        bucket = buckets.get(i) if i >= 0 else None
        if bucket:
            picked.extend(bucket)
        if len(picked) < need:
            lower = [j for j in buckets if j < i]
            if lower:
                lower.sort(reverse=True)
                for j in lower:
                    if (b >> j) & 1:
                        cut = len(picked)
                        picked.extend(buckets[j])
                        if len(picked) >= need:
                            break
                else:
                    for j in reversed(lower):
                        if not (b >> j) & 1:
                            cut = len(picked)
                            picked.extend(buckets[j])
                            if len(picked) >= need:
                                break
            if len(picked) < need:
                for j in sorted(j for j in buckets if j > i):
                    cut = len(picked)
                    picked.extend(buckets[j])
                    if len(picked) >= need:
                        break
        if len(picked) > need:  # cut < need: the last bucket taken is only partly needed
            ranked = [(c.id_int ^ target_int, c) for c in picked[:cut]]  # ids are unique: no Contact compares
            ranked.sort()
            tail = [(c.id_int ^ target_int, c) for c in picked[cut:]]
            if need - cut == 1:
                ranked.append(min(tail))
            else:
                tail.sort()
                ranked.extend(tail[: need - cut])
            picked = [c for _, c in ranked]
        elif len(picked) > 1:
            ranked = [(c.id_int ^ target_int, c) for c in picked]
            ranked.sort()
            picked = [c for _, c in ranked]
        if exclude_int is not None:
            picked = [c for c in picked if c.id_int != exclude_int]
        return picked[:count]

    def mark_used(self, target_int: int, now_s: float) -> None:
        """A lookup targeted this bucket's range (it needs no refresh for a while)."""
        if self.bucket_used_s is None:
            self.bucket_used_s = {}
        self.bucket_used_s[(target_int ^ self.own_int).bit_length() - 1] = now_s

    def stale_buckets(self, now_s: float, interval_s: float, since_s: float) -> list[int]:
        used = self.bucket_used_s or {}
        return [i for i in self.buckets if now_s - used.get(i, since_s) >= interval_s]
