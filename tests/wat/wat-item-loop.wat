;; Calls regua.item(0) forever, as if each call bought a new time budget.
  (func (export "regua_metadata") (result i64) (call $metadata))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64)
    (loop $again (call $item (i32.const 0)) (br $again))
    (call $answer (local.get 2)))
