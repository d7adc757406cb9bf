;; Declared a segment, but answers every customer with a rest policy's "allow".
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (local $n i32) (local $i i32) (local $at i32)
    (local.set $n (i32.load8_u (local.get 2)))
    (i32.store8 (i32.const 4096) (i32.const 0))
    (i32.store8 (i32.const 4097) (local.get $n))
    (local.set $at (i32.const 4098))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $item (local.get $i))
      ;; Ok, Allow, no rule, no reason, no until, no retry_after, no notes
      (i64.store (local.get $at) (i64.const 0))
      (local.set $at (i32.add (local.get $at) (i32.const 7)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i64.or (i64.const 17592186044416)
            (i64.extend_i32_u (i32.sub (local.get $at) (i32.const 4096)))))
