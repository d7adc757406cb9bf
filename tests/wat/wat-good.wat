;; Behaves: every customer is in the segment. The control for the others.
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64) (call $answer (local.get 2)))
