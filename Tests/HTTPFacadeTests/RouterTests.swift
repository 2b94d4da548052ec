import Testing

@testable import HTTPFacade

@Suite("Routing table") struct RouterTests {
    @Test("every route of INTERFACE.md matches its method and path")
    func everyRoute() {
        #expect(Router.match(method: "POST", path: "/hold") == .matched(.hold, pathParameter: nil))
        #expect(Router.match(method: "POST", path: "/release") == .matched(.release, pathParameter: nil))
        #expect(Router.match(method: "POST", path: "/purchase") == .matched(.purchase, pathParameter: nil))
        #expect(Router.match(method: "GET", path: "/holds/h_1") == .matched(.holdGet, pathParameter: "h_1"))
        #expect(Router.match(method: "GET", path: "/availability") == .matched(.availability, pathParameter: nil))
        #expect(
            Router.match(method: "PUT", path: "/showtimes/show:1/seats")
                == .matched(.seatsDefine, pathParameter: "show:1")
        )
        #expect(Router.match(method: "POST", path: "/holds/h_1/extend") == .matched(.holdExtend, pathParameter: "h_1"))
        #expect(
            Router.match(method: "GET", path: "/showtimes/show:1/seats/A-1/history")
                == .matched(.seatHistory, pathParameter: "show:1/A-1")
        )
        #expect(Route.historyParameters("show:1/A-1") == ("show:1", "A-1"))
        #expect(Route.historyParameters("/") == ("", ""))
        #expect(Router.match(method: "GET", path: "/healthz") == .matched(.healthz, pathParameter: nil))
        #expect(Router.match(method: "GET", path: "/readyz") == .matched(.readyz, pathParameter: nil))
        // /metrics is on the operations port only.
        #expect(Router.match(method: "GET", path: "/metrics") == .notFound)
    }

    @Test("a known path with another method is 405 and names the allowed methods")
    func wrongMethod() {
        #expect(Router.match(method: "GET", path: "/hold") == .methodNotAllowed(.hold))
        #expect(Router.match(method: "DELETE", path: "/holds/h_1") == .methodNotAllowed(.holdGet))
        #expect(Router.match(method: "POST", path: "/showtimes/s/seats") == .methodNotAllowed(.seatsDefine))
        #expect(Route.hold.allow == "POST, OPTIONS")
        #expect(Route.seatsDefine.allow == "PUT, OPTIONS")
        #expect(Route.availability.allow == "GET, OPTIONS")
    }

    @Test("OPTIONS on a known path is a preflight; on an unknown path 404")
    func preflight() {
        #expect(Router.match(method: "OPTIONS", path: "/hold") == .preflight(.hold))
        #expect(Router.match(method: "OPTIONS", path: "/holds/x") == .preflight(.holdGet))
        #expect(Router.match(method: "OPTIONS", path: "/nope") == .notFound)
    }

    @Test(
        "unknown paths are 404, including near misses",
        arguments: [
            "/", "/hold/", "/holds", "/holds/a/b", "/showtimes/s", "/showtimes/s/seats/x", "/showtimes//seat", "/HOLD",
            "//hold", "/availability/x", "/metrics/", "/holds/a/extend/x", "/showtimes/s/seats/a/history/x",
            "/showtimes/s/seats/a/b",
        ]
    )
    func unknownPaths(path: String) {
        #expect(Router.match(method: "GET", path: path) == .notFound)
        #expect(RouteMatch.notFound.routeLabel == "unmatched")
    }

    @Test("an empty path parameter still routes, so validation can name it")
    func emptyParameter() {
        #expect(Router.match(method: "GET", path: "/holds/") == .matched(.holdGet, pathParameter: ""))
        #expect(Router.match(method: "PUT", path: "/showtimes//seats") == .matched(.seatsDefine, pathParameter: ""))
    }

    @Test("metrics and logs label requests with the route template")
    func labels() {
        #expect(Router.match(method: "GET", path: "/holds/h_42").routeLabel == "/holds/{holdId}")
        #expect(Router.match(method: "PUT", path: "/showtimes/x/seats").routeLabel == "/showtimes/{showtimeId}/seats")
        #expect(Route.hold.successStatus == 201)
        #expect(Route.release.successStatus == 200)
    }
}
