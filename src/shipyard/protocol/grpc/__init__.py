"""KServe v2 over gRPC: modules generated from grpc_predict_v2.proto (`make proto`) and the one
converter between their messages and shipyard's numpy requests and responses (codec.py)."""
