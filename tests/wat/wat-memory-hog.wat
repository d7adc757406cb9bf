;; Grows its memory to 56 MiB (900 pages) and touches every page of it on every call, then answers.
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (local $at i32)
    (if (i32.lt_u (memory.size) (i32.const 900))
      (then (drop (memory.grow (i32.sub (i32.const 900) (memory.size))))))
    (local.set $at (i32.const 262144))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $at) (i32.const 58982400)))
      (i32.store8 (local.get $at) (i32.const 1))
      (local.set $at (i32.add (local.get $at) (i32.const 4096)))
      (br $next)))
    (call $answer (local.get 2)))
