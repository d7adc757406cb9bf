;; What every hand-written test plugin shares: the ABI section, imports, one memory, a bump
;; allocator, metadata named after the file, and a well-formed segment answer. The build script
;; wraps each `*.wat` file of this folder in `(module …)` with this text first, replacing
;; @NAME@ with the file's name. Nothing is exported here: each plugin exports its own
;; `regua_metadata` and `regua_evaluate`, usually `$metadata` and `$answer`.
  (import "regua" "item" (func $item (param i32)))
  (import "regua" "log" (func $log (param i32 i32 i32)))
  (@custom "regua-abi" "\02\00\00\00\01")
  (memory (export "memory") 4)
  (data (i32.const 16) "{\"name\":\"@NAME@\",\"kind\":\"segment\",\"version\":\"1\",\"description\":\"hand-written hostile plugin\",\"abi\":2,\"params\":{}}\00")
  (global $heap (mut i32) (i32.const 8192))
  (func (export "regua_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  ;; The packed (ptr << 32 | len) of the NUL-terminated text at $at.
  (func $text (param $at i32) (result i64)
    (local $end i32)
    (local.set $end (local.get $at))
    (block $done (loop $next
      (br_if $done (i32.eqz (i32.load8_u (local.get $end))))
      (local.set $end (i32.add (local.get $end) (i32.const 1)))
      (br $next)))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $at)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $end) (local.get $at)))))
  (func $metadata (result i64) (call $text (i32.const 16)))
  ;; "In the segment, no reasons" for each customer of the batch at $bp (fewer than 128, so the
  ;; count is one byte), calling regua.item before each, written at 4096.
  (func $answer (param $bp i32) (result i64)
    (local $n i32) (local $i i32) (local $at i32)
    (local.set $n (i32.load8_u (local.get $bp)))
    (i32.store8 (i32.const 4096) (i32.const 0))
    (i32.store8 (i32.const 4097) (local.get $n))
    (local.set $at (i32.const 4098))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $item (local.get $i))
      (i32.store8 (local.get $at) (i32.const 0))
      (i32.store8 (i32.add (local.get $at) (i32.const 1)) (i32.const 1))
      (i32.store8 (i32.add (local.get $at) (i32.const 2)) (i32.const 0))
      (local.set $at (i32.add (local.get $at) (i32.const 3)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (i64.or (i64.const 17592186044416)
            (i64.extend_i32_u (i32.sub (local.get $at) (i32.const 4096)))))
