;; Declares it reads `transactions.at` only, and answers whether the bytes it is given hold
;; "SECR" anywhere: a member it did not declare (a transaction's `business_unit` "SECRET…",
;; say) must not reach it, whatever another plugin of the batch reads.
  (data (i32.const 1024) "{\"name\":\"wat-members\",\"kind\":\"segment\",\"version\":\"1\",\"description\":\"reads transactions.at only\",\"abi\":3,\"params\":{},\"reads\":[\"transactions.at\"]}\00")
  (func (export "regua_metadata") (result i64) (call $text (i32.const 1024)))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (local $at i32) (local $end i32) (local $seen i32)
    (local.set $at (local.get 2))
    (local.set $end (i32.sub (i32.add (local.get 2) (local.get 3)) (i32.const 3)))
    (block $done (loop $next
      (br_if $done (i32.ge_s (local.get $at) (local.get $end)))
      ;; "SECR" read as a little-endian i32.
      (if (i32.eq (i32.load (local.get $at)) (i32.const 0x52434553)) (then (local.set $seen (i32.const 1))))
      (local.set $at (i32.add (local.get $at) (i32.const 1)))
      (br $next)))
    ;; One `Match { matched: $seen, reasons: [] }` per customer.
    (call $columns (i32.load (local.get 2)) (i32.const 2) (local.get $seen)))
