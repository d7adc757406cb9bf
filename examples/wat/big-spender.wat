;; big-spender: a segment written in WebAssembly text, from docs/ABI.md alone (no SDK): the
;; customers with at least one purchase of 500 or more (in the transaction's currency).
;;
;; It declares the two transaction members it reads, so every other part and member arrives
;; empty; it takes no parameters (any given are ignored). Build it with
;; `regua build examples/wat/big-spender.wat` (or any assembler: `wat2wasm` of Debian's `wabt`),
;; then `regua batch --plugin big-spender --input examples/customers.ndjson --now …`.
(module
  ;; §3: "I am about to evaluate customer i".
  (import "regua" "item" (func $item (param i32)))
  ;; §2: ABI 3, kind 1 (segment).
  (@custom "regua-abi" "\03\00\00\00\01")
  (memory (export "memory") 2)

  ;; §6: the metadata, NUL-terminated here (the NUL is not part of it).
  (data (i32.const 16) "{\"name\":\"big-spender\",\"kind\":\"segment\",\"version\":\"1.0.0\",\"description\":\"Segment: customers with a purchase of 500 or more (written in WebAssembly text)\",\"abi\":3,\"params\":{},\"reads\":[\"transactions.kind\",\"transactions.amount\"]}\00")
  ;; The reason given for a customer in the segment (25 bytes).
  (data (i32.const 1024) "a purchase of 500 or more")
  (global $reason_len i32 (i32.const 25))

  ;; A bump allocator from 4096, growing the memory as needed: the instance is dropped after
  ;; the call (§1), so nothing is ever freed.
  (global $heap (mut i32) (i32.const 4096))
  (func $alloc (export "regua_alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    (block $room
      (loop $grow
        (br_if $room (i32.le_u (local.get $end)
                               (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then unreachable))
        (br $grow)))
    (global.set $heap (local.get $end))
    (local.get $p))

  ;; The packed (ptr << 32 | len) of §4.
  (func $pack (param $ptr i32) (param $len i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $ptr)) (i64.const 32))
            (i64.extend_i32_u (local.get $len))))

  (func (export "regua_metadata") (result i64)
    (local $end i32)
    (local.set $end (i32.const 16))
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (local.get $end))))
        (local.set $end (i32.add (local.get $end) (i32.const 1)))
        (br $next)))
    (call $pack (i32.const 16) (i32.sub (local.get $end) (i32.const 16))))

  ;; §8.1: the size of a Str(n) or Bin(n) column at $p: n + 1 offsets, then offsets[n] bytes.
  (func $column (param $p i32) (param $n i32) (result i32)
    (i32.add (i32.shl (i32.add (local.get $n) (i32.const 1)) (i32.const 2))
             (i32.load (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))))

  ;; A postcard varint (§8) at $p: LEB128, 7 bits a byte, low bits first. Answers the value
  ;; and the position after it.
  (func $varint (param $p i32) (result i32 i32)
    (local $value i32) (local $shift i32) (local $byte i32)
    (loop $more
      (local.set $byte (i32.load8_u (local.get $p)))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (local.set $value (i32.or (local.get $value)
        (i32.shl (i32.and (local.get $byte) (i32.const 0x7f)) (local.get $shift))))
      (local.set $shift (i32.add (local.get $shift) (i32.const 7)))
      (br_if $more (i32.and (local.get $byte) (i32.const 0x80))))
    (local.get $value) (local.get $p))

  ;; §5: whether the call wants reasons: the context is `default_tz` and `params` (each a
  ;; varint length and that many bytes), then `reasons`, one byte (the runs of inputs after it are not
  ;; needed: a segment's answer does not depend on `now`).
  (func $wants_reasons (param $ctx i32) (result i32)
    (local $len i32) (local $p i32)
    (call $varint (local.get $ctx)) (local.set $p) (local.set $len)
    (call $varint (i32.add (local.get $p) (local.get $len))) (local.set $p) (local.set $len)
    (i32.load8_u (i32.add (local.get $p) (local.get $len))))

  ;; §8.1: the chunk is n, then the columns id Str(n), tz OptStr(n), profile Bin(n), consents
  ;; Bin(n), the transactions' row offsets ((n + 1) × u32), then their columns over m rows:
  ;; at (m × i64), amount (m × f64), id Str(m), kind Str(m), … The loads are unaligned, which
  ;; WebAssembly allows. §7: the answer is 0, n, n statuses 0, the error column (empty), the
  ;; outcome column: each customer's `Match` in postcard, `matched` and the reasons (a count,
  ;; then each as a varint length and bytes).
  (func (export "regua_evaluate") (param $ctx i32) (param $ctx_len i32)
                                  (param $chunk i32) (param $chunk_len i32) (result i64)
    (local $n i32) (local $m i32) (local $p i32) (local $rows i32) (local $amounts i32)
    (local $kinds i32) (local $kind_bytes i32) (local $i i32) (local $j i32) (local $end i32)
    (local $from i32) (local $to i32) (local $hit i32) (local $explain i32)
    (local $out i32) (local $status i32) (local $offsets i32) (local $bytes i32) (local $o i32)
    (local.set $explain (call $wants_reasons (local.get $ctx)))
    (local.set $n (i32.load (local.get $chunk)))
    (local.set $p (i32.add (local.get $chunk) (i32.const 4)))
    (local.set $p (i32.add (local.get $p) (call $column (local.get $p) (local.get $n))))   ;; id
    (local.set $p (i32.add (local.get $p) (local.get $n)))                                ;; tz presence
    (local.set $p (i32.add (local.get $p) (call $column (local.get $p) (local.get $n))))   ;; tz
    (local.set $p (i32.add (local.get $p) (call $column (local.get $p) (local.get $n))))   ;; profile
    (local.set $p (i32.add (local.get $p) (call $column (local.get $p) (local.get $n))))   ;; consents
    (local.set $rows (local.get $p))
    (local.set $m (i32.load (i32.add (local.get $rows) (i32.shl (local.get $n) (i32.const 2)))))
    ;; `at` (m × i64) comes first; this plugin does not declare it, so it is all zeros.
    (local.set $amounts (i32.add (i32.add (local.get $rows)
                                          (i32.shl (i32.add (local.get $n) (i32.const 1)) (i32.const 2)))
                                 (i32.shl (local.get $m) (i32.const 3))))
    ;; The transactions' id column (all empty: not declared either), then kind.
    (local.set $kinds (i32.add (local.get $amounts) (i32.shl (local.get $m) (i32.const 3))))
    (local.set $kinds (i32.add (local.get $kinds) (call $column (local.get $kinds) (local.get $m))))
    (local.set $kind_bytes (i32.add (local.get $kinds)
                                    (i32.shl (i32.add (local.get $m) (i32.const 1)) (i32.const 2))))
    ;; The answer: 5 + n + 8 (n + 1) bytes of head and offsets, at most 28 a customer after.
    (local.set $out (call $alloc (i32.add (i32.const 13) (i32.mul (local.get $n) (i32.const 37)))))
    (i32.store8 (local.get $out) (i32.const 0))
    (i32.store (i32.add (local.get $out) (i32.const 1)) (local.get $n))
    (local.set $status (i32.add (local.get $out) (i32.const 5)))
    ;; The statuses and the error column's n + 1 offsets, all 0.
    (memory.fill (local.get $status) (i32.const 0)
                 (i32.add (local.get $n) (i32.shl (i32.add (local.get $n) (i32.const 1)) (i32.const 2))))
    (local.set $offsets (i32.add (local.get $status)
      (i32.add (local.get $n) (i32.shl (i32.add (local.get $n) (i32.const 1)) (i32.const 2)))))
    (local.set $bytes (i32.add (local.get $offsets)
                               (i32.shl (i32.add (local.get $n) (i32.const 1)) (i32.const 2))))
    (i32.store (local.get $offsets) (i32.const 0))
    (local.set $o (local.get $bytes))
    (block $done
      (loop $customer
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $item (local.get $i))
        ;; Customer i's transactions are rows rows[i] .. rows[i + 1].
        (local.set $j (i32.load (i32.add (local.get $rows) (i32.shl (local.get $i) (i32.const 2)))))
        (local.set $end (i32.load (i32.add (local.get $rows)
                                           (i32.shl (i32.add (local.get $i) (i32.const 1)) (i32.const 2)))))
        (local.set $hit (i32.const 0))
        (block $found
          (loop $each
            (br_if $found (i32.ge_u (local.get $j) (local.get $end)))
            (local.set $from (i32.load (i32.add (local.get $kinds) (i32.shl (local.get $j) (i32.const 2)))))
            (local.set $to (i32.load (i32.add (local.get $kinds)
                                              (i32.shl (i32.add (local.get $j) (i32.const 1)) (i32.const 2)))))
            (if (i32.and
                  (i32.and
                    (i32.eq (i32.sub (local.get $to) (local.get $from)) (i32.const 8))
                    ;; "purchase" read as a little-endian i64.
                    (i64.eq (i64.load (i32.add (local.get $kind_bytes) (local.get $from)))
                            (i64.const 0x6573616863727570)))
                  (f64.ge (f64.load (i32.add (local.get $amounts) (i32.shl (local.get $j) (i32.const 3))))
                          (f64.const 500)))
              (then (local.set $hit (i32.const 1)) (br $found)))
            (local.set $j (i32.add (local.get $j) (i32.const 1)))
            (br $each)))
        ;; Match { matched, reasons }: one reason when in the segment and reasons are wanted.
        (i32.store8 (local.get $o) (local.get $hit))
        (local.set $hit (i32.and (local.get $hit) (local.get $explain)))
        (i32.store8 (i32.add (local.get $o) (i32.const 1)) (local.get $hit))
        (local.set $o (i32.add (local.get $o) (i32.const 2)))
        (if (local.get $hit)
          (then
            (i32.store8 (local.get $o) (global.get $reason_len))
            (memory.copy (i32.add (local.get $o) (i32.const 1)) (i32.const 1024)
                         (global.get $reason_len))
            (local.set $o (i32.add (local.get $o) (i32.add (i32.const 1) (global.get $reason_len))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (i32.store (i32.add (local.get $offsets) (i32.shl (local.get $i) (i32.const 2)))
                   (i32.sub (local.get $o) (local.get $bytes)))
        (br $customer)))
    (call $pack (local.get $out) (i32.sub (local.get $o) (local.get $out)))))
