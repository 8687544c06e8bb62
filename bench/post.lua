-- wrk script for bench/run.sh: POST a valid JSON body (it carries the keys
-- id and token the json-validation plugin requires).
wrk.method = "POST"
wrk.body   = '{"id": "xxx", "token": "xxx", "anotherField": "yyy"}'
wrk.headers["Content-Type"] = "application/json"
