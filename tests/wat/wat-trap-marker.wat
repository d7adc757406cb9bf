;; Traps on a chunk that holds a customer whose bytes contain "BOOM" (its id, say), before any
;; call of regua.item: nothing tells the host which customer it was. Every other customer is in
;; the segment.
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (local $at i32) (local $end i32)
    (local.set $at (local.get 2))
    (local.set $end (i32.sub (i32.add (local.get 2) (local.get 3)) (i32.const 3)))
    (block $done (loop $next
      (br_if $done (i32.ge_s (local.get $at) (local.get $end)))
      ;; "BOOM" read as a little-endian i32.
      (if (i32.eq (i32.load (local.get $at)) (i32.const 0x4d4f4f42)) (then unreachable))
      (local.set $at (i32.add (local.get $at) (i32.const 1)))
      (br $next)))
    (call $answer (local.get 2)))
