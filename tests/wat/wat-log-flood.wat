;; Logs 100,000 lines per call, each trying to forge a log line of its own and a terminal colour.
  (data (i32.const 2048) "plugin says hi\0a2026-01-01T00:00:00Z ERROR regua: FORGED line\1b[31m")
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (local $i i32)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (i32.const 100000)))
      (call $log (i32.const 3) (i32.const 2048) (i32.const 66))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (call $answer (local.get 2)))
