;; Grows its table by 99,999 entries (to the 100,000 a table may hold) on every call: memory outside the linear memory.
  (table $t 1 funcref)
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (drop (table.grow $t (ref.null func) (i32.const 99999)))
    (call $answer (local.get 2)))
