;; Names itself with a newline and quotes, to forge a log line and a metric.
  (data (i32.const 1024) "{\"name\":\"evil\\\"} 1\\nregua_injected_metric{a=\\\"1\\\"} 1\",\"kind\":\"segment\",\"version\":\"1\",\"description\":\"\",\"abi\":3,\"params\":{}}\00")
  (func (export "regua_metadata") (result i64) (call $text (i32.const 1024)))
  (func (export "regua_evaluate") (param i32 i32 i32 i32) (result i64) (call $answer (local.get 2)))
