;; What every hand-written test plugin shares: the ABI section, imports, one memory, a bump
;; allocator, metadata named after the file, and well-formed answers in ABI 3's columns. The build script
;; wraps each `*.wat` file of this folder in `(module …)` with this text first, replacing
;; @NAME@ with the file's name. Nothing is exported here: each plugin exports its own
;; `regua_metadata` and `regua_evaluate`, usually `$metadata` and `$answer`.
  (import "regua" "item" (func $item (param i32)))
  (import "regua" "log" (func $log (param i32 i32 i32)))
  (import "regua" "zone" (func $zone (param i32 i32 i32 i32) (result i32)))
  (@custom "regua-abi" "\03\00\00\00\01")
  (memory (export "memory") 4)
  (data (i32.const 16) "{\"name\":\"@NAME@\",\"kind\":\"segment\",\"version\":\"1\",\"description\":\"hand-written hostile plugin\",\"abi\":3,\"params\":{}}\00")
  (global $heap (mut i32) (i32.const 8192))
  (func $alloc (export "regua_alloc") (param $n i32) (result i32)
    (local $p i32) (local $end i32)
    (local.set $p (global.get $heap))
    (local.set $end (i32.add (local.get $p) (local.get $n)))
    ;; Grow the memory to hold it (a failed grow leaves the host's write to fail cleanly).
    (if (i32.gt_u (local.get $end) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow
        (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16))
                 (memory.size))))))
    (global.set $heap (local.get $end))
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
  ;; The answer of docs/ABI.md §7 for $n customers, each answered with an outcome of $width
  ;; bytes, the first $first and the others 0, calling regua.item before each, written on the heap:
  ;; 0 (answered), n, n statuses 0, the error column (n + 1 offsets 0, no bytes), the outcome
  ;; column (offsets 0, w, 2w, …, then the outcomes).
  (func $columns (param $n i32) (param $width i32) (param $first i32) (result i64)
    (local $i i32) (local $base i32) (local $status i32) (local $offsets i32) (local $bytes i32) (local $end i32)
    ;; 5 + n + 8 (n + 1) + n × width bytes.
    (local.set $base (call $alloc (i32.add (i32.add (i32.const 13) (i32.mul (local.get $n) (i32.const 9)))
                                           (i32.mul (local.get $n) (local.get $width)))))
    (i32.store8 (local.get $base) (i32.const 0))
    (i32.store (i32.add (local.get $base) (i32.const 1)) (local.get $n))
    (local.set $status (i32.add (local.get $base) (i32.const 5)))
    ;; The error column's offsets, all 0, then the outcome column's first offset, 0.
    (local.set $offsets (i32.add (local.get $status) (local.get $n)))
    (memory.fill (local.get $offsets) (i32.const 0) (i32.mul (i32.add (local.get $n) (i32.const 2)) (i32.const 4)))
    (local.set $offsets (i32.add (local.get $offsets) (i32.mul (i32.add (local.get $n) (i32.const 1)) (i32.const 4))))
    (local.set $bytes (i32.add (local.get $offsets) (i32.mul (i32.add (local.get $n) (i32.const 1)) (i32.const 4))))
    (memory.fill (local.get $bytes) (i32.const 0) (i32.mul (local.get $n) (local.get $width)))
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (call $item (local.get $i))
      (i32.store8 (i32.add (local.get $status) (local.get $i)) (i32.const 0))
      (i32.store (i32.add (local.get $offsets) (i32.mul (i32.add (local.get $i) (i32.const 1)) (i32.const 4)))
                 (i32.mul (i32.add (local.get $i) (i32.const 1)) (local.get $width)))
      (i32.store8 (i32.add (local.get $bytes) (i32.mul (local.get $i) (local.get $width))) (local.get $first))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.set $end (i32.add (local.get $bytes) (i32.mul (local.get $n) (local.get $width))))
    (i64.or (i64.shl (i64.extend_i32_u (local.get $base)) (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $end) (local.get $base)))))
  ;; "In the segment, no reasons" (`01 00`) for each customer of the chunk at $bp.
  (func $answer (param $bp i32) (result i64)
    (call $columns (i32.load (local.get $bp)) (i32.const 2) (i32.const 1)))
