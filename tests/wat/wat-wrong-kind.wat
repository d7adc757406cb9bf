;; Declared a segment, but answers every customer with a rest policy's "allow".
  (func (export "regua_metadata") (result i64) (call $metadata))
  ;; Allow, no rule, no reason, no until, no retry_after, no notes: seven bytes 0 a customer.
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (call $columns (i32.load (local.get 2)) (i32.const 7) (i32.const 0)))
