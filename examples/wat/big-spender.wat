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
  ;; §2: ABI 2, kind 1 (segment).
  (@custom "regua-abi" "\02\00\00\00\01")
  (memory (export "memory") 2)

  ;; §6: the metadata, NUL-terminated here (the NUL is not part of it).
  (data (i32.const 16) "{\"name\":\"big-spender\",\"kind\":\"segment\",\"version\":\"1.0.0\",\"description\":\"Segment: customers with a purchase of 500 or more (written in WebAssembly text)\",\"abi\":2,\"params\":{},\"reads\":[\"transactions.kind\",\"transactions.amount\"]}\00")
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

  ;; Reading: $at is the read position.
  (global $at (mut i32) (i32.const 0))

  ;; A postcard varint (§8): LEB128, 7 bits a byte, low bits first.
  (func $varint (result i32)
    (local $value i32) (local $shift i32) (local $byte i32)
    (loop $more
      (local.set $byte (i32.load8_u (global.get $at)))
      (global.set $at (i32.add (global.get $at) (i32.const 1)))
      (local.set $value (i32.or (local.get $value)
        (i32.shl (i32.and (local.get $byte) (i32.const 0x7f)) (local.get $shift))))
      (local.set $shift (i32.add (local.get $shift) (i32.const 7)))
      (br_if $more (i32.and (local.get $byte) (i32.const 0x80))))
    (local.get $value))

  ;; Writes `value` as a varint at $out; answers the next position.
  (func $put_varint (param $out i32) (param $value i32) (result i32)
    (loop $more
      (if (i32.ge_u (local.get $value) (i32.const 0x80))
        (then
          (i32.store8 (local.get $out) (i32.or (local.get $value) (i32.const 0x80)))
          (local.set $out (i32.add (local.get $out) (i32.const 1)))
          (local.set $value (i32.shr_u (local.get $value) (i32.const 7)))
          (br $more))))
    (i32.store8 (local.get $out) (local.get $value))
    (i32.add (local.get $out) (i32.const 1)))

  ;; Skips a u32-length-prefixed field (§8.1: Utf8, Part); answers where its bytes start.
  (func $skip (result i32)
    (local $start i32)
    (local.set $start (i32.add (global.get $at) (i32.const 4)))
    (global.set $at (i32.add (local.get $start) (i32.load (global.get $at))))
    (local.get $start))

  ;; Whether the transactions part at $t (§8.1: n, at, amount, id, kind, …) has a transaction
  ;; of kind "purchase" with an amount of 500 or more. The columns are not aligned: the
  ;; loads below are unaligned, which WebAssembly allows.
  (func $big_purchase (param $t i32) (result i32)
    (local $n i32) (local $amounts i32) (local $ids i32) (local $kinds i32) (local $bytes i32)
    (local $j i32) (local $from i32) (local $to i32)
    (local.set $n (i32.load (local.get $t)))
    ;; `at` (n × i64) comes first; this plugin does not declare it, so it is all zeros.
    (local.set $amounts (i32.add (local.get $t) (i32.add (i32.const 4)
                                                         (i32.shl (local.get $n) (i32.const 3)))))
    ;; id: (n + 1) offsets, then offsets[n] bytes (all empty here: not declared either).
    (local.set $ids (i32.add (local.get $amounts) (i32.shl (local.get $n) (i32.const 3))))
    (local.set $kinds
      (i32.add (i32.add (local.get $ids)
                        (i32.shl (i32.add (local.get $n) (i32.const 1)) (i32.const 2)))
               (i32.load (i32.add (local.get $ids) (i32.shl (local.get $n) (i32.const 2))))))
    (local.set $bytes (i32.add (local.get $kinds)
                               (i32.shl (i32.add (local.get $n) (i32.const 1)) (i32.const 2))))
    (block $none
      (loop $each
        (br_if $none (i32.ge_u (local.get $j) (local.get $n)))
        (local.set $from (i32.load (i32.add (local.get $kinds) (i32.shl (local.get $j) (i32.const 2)))))
        (local.set $to (i32.load (i32.add (local.get $kinds)
                                          (i32.shl (i32.add (local.get $j) (i32.const 1)) (i32.const 2)))))
        (if (i32.and
              (i32.and
                (i32.eq (i32.sub (local.get $to) (local.get $from)) (i32.const 8))
                ;; "purchase" read as a little-endian i64.
                (i64.eq (i64.load (i32.add (local.get $bytes) (local.get $from)))
                        (i64.const 0x6573616863727570)))
              (f64.ge (f64.load (i32.add (local.get $amounts) (i32.shl (local.get $j) (i32.const 3))))
                      (f64.const 500)))
          (then (return (i32.const 1))))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $each)))
    (i32.const 0))

  ;; §5: the call context at ($ctx, $ctx_len) is not read (no parameters); the batch is a
  ;; varint count and the records back to back. §7: the answer is Ok (0), the count, and per
  ;; customer Ok (0), `matched` and the reasons (a count, then each as length and bytes).
  (func (export "regua_evaluate") (param $ctx i32) (param $ctx_len i32)
                                  (param $batch i32) (param $batch_len i32) (result i64)
    (local $n i32) (local $i i32) (local $out i32) (local $o i32) (local $part i32) (local $hit i32)
    (global.set $at (local.get $batch))
    (local.set $n (call $varint))
    ;; 6 bytes of header, and at most 4 + 25 per customer.
    (local.set $out (call $alloc (i32.add (i32.const 6) (i32.mul (local.get $n) (i32.const 32)))))
    (i32.store8 (local.get $out) (i32.const 0))
    (local.set $o (call $put_varint (i32.add (local.get $out) (i32.const 1)) (local.get $n)))
    (block $done
      (loop $customer
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $item (local.get $i))
        (drop (call $skip))                                   ;; id
        (if (i32.load8_u (global.get $at))                    ;; tz: 1 then Utf8, or 0
          (then (global.set $at (i32.add (global.get $at) (i32.const 1))) (drop (call $skip)))
          (else (global.set $at (i32.add (global.get $at) (i32.const 1)))))
        (drop (call $skip))                                   ;; profile
        (drop (call $skip))                                   ;; consents
        (local.set $hit (i32.const 0))
        (local.set $part (call $skip))                        ;; transactions
        (if (i32.load (i32.sub (local.get $part) (i32.const 4)))
          (then (local.set $hit (call $big_purchase (local.get $part)))))
        (drop (call $skip))                                   ;; events
        (drop (call $skip))                                   ;; inbound
        (drop (call $skip))                                   ;; contacts
        (drop (call $skip))                                   ;; journeys
        (i32.store8 (local.get $o) (i32.const 0))
        (i32.store8 (i32.add (local.get $o) (i32.const 1)) (local.get $hit))
        (i32.store8 (i32.add (local.get $o) (i32.const 2)) (local.get $hit))
        (local.set $o (i32.add (local.get $o) (i32.const 3)))
        (if (local.get $hit)
          (then
            (i32.store8 (local.get $o) (global.get $reason_len))
            (memory.copy (i32.add (local.get $o) (i32.const 1)) (i32.const 1024)
                         (global.get $reason_len))
            (local.set $o (i32.add (local.get $o) (i32.add (i32.const 1) (global.get $reason_len))))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $customer)))
    (call $pack (local.get $out) (i32.sub (local.get $o) (local.get $out)))))
