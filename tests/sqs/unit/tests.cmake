# Unit tests of the SQS front end: no broker, no sockets.
spool_test(sqs_auth_test ${CMAKE_CURRENT_LIST_DIR}/auth_test.cc LABEL unit DEPS spool::protocol)
spool_test(sqs_request_test ${CMAKE_CURRENT_LIST_DIR}/request_test.cc LABEL unit DEPS spool::protocol)
spool_test(sqs_wire_test ${CMAKE_CURRENT_LIST_DIR}/wire_test.cc LABEL unit DEPS spool::protocol)
