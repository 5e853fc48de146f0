#include "admin_server.h"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>
#include <Poco/Timespan.h>
#include <Poco/URI.h>

#include <exception>
#include <string>
#include <utility>

namespace messenger {
namespace {

using Poco::Net::HTTPResponse;

// Threads serving admin requests: scrapes and probes are rare and quick, and a client holding
// connections open can tie up no more than these.
constexpr int kThreads = 4;
// Connections waiting for a thread before more are refused.
constexpr int kMaxQueued = 16;
constexpr int kListenBacklog = 64;
// A request must arrive (and its answer leave) within this, so a silent client frees its thread.
constexpr int kTimeoutSeconds = 5;
// A scraper's idle keep-alive connection is closed after this.
constexpr int kKeepAliveSeconds = 10;

constexpr char kPlainText[] = "text/plain; charset=utf-8";
// The Prometheus text exposition format, version 0.0.4.
constexpr char kExpositionType[] = "text/plain; version=0.0.4; charset=utf-8";

void Respond(Poco::Net::HTTPServerResponse& response, HTTPResponse::HTTPStatus status,
             const std::string& content_type, const std::string& body) {
  response.setStatusAndReason(status);
  response.setContentType(content_type);
  response.set("Cache-Control", "no-store");
  // Sends the headers with Content-Length, and the body unless the request was HEAD.
  response.sendBuffer(body.data(), body.size());
}

// A reason on one line, whatever the check returned.
std::string OneLine(std::string text) {
  for (char& c : text) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return text;
}

class AdminHandler final : public Poco::Net::HTTPRequestHandler {
 public:
  AdminHandler(const Metrics& metrics, const AdminServer::ReadinessCheck& ready)
      : metrics_(metrics), ready_(ready) {}

  void handleRequest(Poco::Net::HTTPServerRequest& request,
                     Poco::Net::HTTPServerResponse& response) override {
    std::string path;
    try {
      path = Poco::URI(request.getURI()).getPath();
    } catch (const Poco::Exception&) {
      return Respond(response, HTTPResponse::HTTP_BAD_REQUEST, kPlainText, "bad request URI\n");
    }
    if (path != "/healthz" && path != "/readyz" && path != "/metrics") {
      return Respond(response, HTTPResponse::HTTP_NOT_FOUND, kPlainText,
                     "not found; try /healthz, /readyz or /metrics\n");
    }
    const std::string& method = request.getMethod();
    if (method != Poco::Net::HTTPRequest::HTTP_GET && method != Poco::Net::HTTPRequest::HTTP_HEAD) {
      response.set("Allow", "GET, HEAD");
      return Respond(response, HTTPResponse::HTTP_METHOD_NOT_ALLOWED, kPlainText,
                     "method not allowed; use GET or HEAD\n");
    }

    if (path == "/healthz") {
      return Respond(response, HTTPResponse::HTTP_OK, kPlainText, "ok\n");
    }
    if (path == "/readyz") {
      Status status;
      try {
        status = ready_();
      } catch (const std::exception& e) {
        status = Status(ErrorCode::kInternal, std::string("readiness check failed: ") + e.what());
      }
      if (status.ok()) return Respond(response, HTTPResponse::HTTP_OK, kPlainText, "ok\n");
      return Respond(response, HTTPResponse::HTTP_SERVICE_UNAVAILABLE, kPlainText,
                     OneLine(status.message()) + "\n");
    }
    Respond(response, HTTPResponse::HTTP_OK, kExpositionType, metrics_.RenderPrometheus());
  }

 private:
  const Metrics& metrics_;
  const AdminServer::ReadinessCheck& ready_;
};

class AdminHandlerFactory final : public Poco::Net::HTTPRequestHandlerFactory {
 public:
  AdminHandlerFactory(const Metrics& metrics, AdminServer::ReadinessCheck ready)
      : metrics_(metrics), ready_(std::move(ready)) {}

  Poco::Net::HTTPRequestHandler* createRequestHandler(
      const Poco::Net::HTTPServerRequest&) override {
    return new AdminHandler(metrics_, ready_);
  }

 private:
  const Metrics& metrics_;
  const AdminServer::ReadinessCheck ready_;
};

}  // namespace

Result<std::unique_ptr<AdminServer>> AdminServer::Start(const Metrics& metrics,
                                                        ReadinessCheck ready,
                                                        const AdminOptions& options) {
  if (!ready)
    return Status(ErrorCode::kInvalidArgument, "the admin server needs a readiness check");
  std::unique_ptr<AdminServer> server(new AdminServer());
  const std::string where = options.host + ":" + std::to_string(options.port);
  try {
    const Poco::Net::SocketAddress address(options.host, options.port);
    Poco::Net::ServerSocket listener;
    // As the wire front door: SO_REUSEADDR for a quick restart, no SO_REUSEPORT so a second
    // server fails to start instead of sharing the port.
    listener.bind(address, /*reuseAddress=*/true, /*reusePort=*/false);
    listener.listen(kListenBacklog);
    const Poco::Net::SocketAddress bound = listener.address();
    server->port_ = bound.port();
    server->loopback_ = bound.host().isLoopback();

    server->pool_ = std::make_unique<Poco::ThreadPool>("admin", 1, kThreads);
    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setMaxThreads(kThreads);
    params->setMaxQueued(kMaxQueued);
    params->setTimeout(Poco::Timespan(kTimeoutSeconds, 0));
    params->setKeepAlive(true);
    params->setKeepAliveTimeout(Poco::Timespan(kKeepAliveSeconds, 0));
    params->setServerName("poco_messenger admin");
    // POCO's dispatcher wakes one idle thread per stop(); short idle lives keep the stop quick.
    params->setThreadIdleTime(Poco::Timespan(0, 250 * 1000));
    server->server_ = std::make_unique<Poco::Net::HTTPServer>(
        new AdminHandlerFactory(metrics, std::move(ready)), *server->pool_, listener, params);
    server->server_->start();
  } catch (const Poco::Exception& e) {
    return Status(ErrorCode::kInternal,
                  "cannot serve admin HTTP on " + where + ": " + e.displayText());
  }
  return server;
}

AdminServer::~AdminServer() { Shutdown(); }

void AdminServer::Shutdown() {
  if (!server_) return;
  // Closes the listener and every connection, including one a request is being served on.
  server_->stopAll(/*abortCurrent=*/true);
  pool_->joinAll();
  server_.reset();
  pool_.reset();
}

}  // namespace messenger
