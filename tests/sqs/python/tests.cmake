# Debian's boto3 (Query protocol) against a real spoold; needs the python3-boto3 package and
# must run under Debian's /usr/bin/python3, not a newer boto3 elsewhere on the machine.
add_test(NAME sqs_boto3
  COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/test_sqs_boto3.py
          --spoold $<TARGET_FILE:spoold> --spool $<TARGET_FILE:spool>)
set_tests_properties(sqs_boto3 PROPERTIES LABELS e2e TIMEOUT 300)
