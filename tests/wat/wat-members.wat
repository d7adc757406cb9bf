;; Declares it reads `transactions.at` only, and answers whether the bytes it is given hold
;; "SECR" anywhere: a member it did not declare (a transaction's `business_unit` "SECRET…",
;; say) must not reach it, whatever another plugin of the batch reads.
  (data (i32.const 1024) "{\"name\":\"wat-members\",\"kind\":\"segment\",\"version\":\"1\",\"description\":\"reads transactions.at only\",\"abi\":2,\"params\":{},\"reads\":[\"transactions.at\"]}\00")
  (func (export "regua_metadata") (result i64) (call $text (i32.const 1024)))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (local $at i32) (local $end i32) (local $seen i32) (local $n i32) (local $i i32) (local $out i32)
    (local.set $at (local.get 2))
    (local.set $end (i32.sub (i32.add (local.get 2) (local.get 3)) (i32.const 3)))
    (block $done (loop $next
      (br_if $done (i32.ge_s (local.get $at) (local.get $end)))
      ;; "SECR" read as a little-endian i32.
      (if (i32.eq (i32.load (local.get $at)) (i32.const 0x52434553)) (then (local.set $seen (i32.const 1))))
      (local.set $at (i32.add (local.get $at) (i32.const 1)))
      (br $next)))
    ;; Ok(list) of `Ok(Match { matched: $seen, reasons: [] })`, one per customer (fewer than 128).
    (local.set $n (i32.load8_u (local.get 2)))
    (i32.store8 (i32.const 4096) (i32.const 0))
    (i32.store8 (i32.const 4097) (local.get $n))
    (local.set $out (i32.const 4098))
    (block $end2 (loop $each
      (br_if $end2 (i32.ge_u (local.get $i) (local.get $n)))
      (call $item (local.get $i))
      (i32.store8 (local.get $out) (i32.const 0))
      (i32.store8 (i32.add (local.get $out) (i32.const 1)) (local.get $seen))
      (i32.store8 (i32.add (local.get $out) (i32.const 2)) (i32.const 0))
      (local.set $out (i32.add (local.get $out) (i32.const 3)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $each)))
    (i64.or (i64.const 17592186044416)
            (i64.extend_i32_u (i32.sub (local.get $out) (i32.const 4096)))))
